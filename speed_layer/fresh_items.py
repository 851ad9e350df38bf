"""The terms of brand-new items' vectors, kept in their trending shards. No I/O here.

For each positive event on an item the snapshot lacks, the item's shard (one per item and log partition) records
the user's summed weight and their fold-in vector solved against the current snapshot, stamped with it; serving
solves the item step from all shards (:mod:`lambdarec.model.fresh_items`). A shard stamped with an older snapshot
is re-solved when next written: each of its users' vectors is solved again against the new snapshot from their
fresh state and batch row (the consumer reads them for :func:`stale_users`), as a user's own vector is rebased.

Example
-------
>>> extra = stale_users(trending_rows, model)                         # doctest: +SKIP
>>> shards = with_item_users(shards, users, by_item, inputs)          # doctest: +SKIP
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lambdarec.events import Event
from lambdarec.model.freshstate import rebase
from lambdarec.model.rows import FreshUser, TrendingItem, UserRow
from lambdarec.model.snapshot import SnapshotModel
from speed_layer.state import Position, event_weight, is_positive


@dataclass(frozen=True)
class ItemInputs:
    """What the store held for a batch, as :func:`with_item_users` reads it (from ``speed_layer.apply``'s)."""

    model: SnapshotModel | None
    states: dict[str, FreshUser]
    history: dict[str, UserRow]
    trending: dict[str, TrendingItem]
    weights: dict[str, float]
    max_users: int


def stale_users(shards: Iterable[TrendingItem], model: SnapshotModel | None) -> list[str]:
    """Users of brand-new items' shards solved against another snapshot: their vectors are solved again."""
    if model is None or model.xtx is None:
        return []
    index = model.item_index
    return sorted(
        {u for s in shards if s.users and s.basis != model.version and s.item_id not in index for u in s.users}
    )


def with_item_users(
    shards: list[TrendingItem],
    users: list[FreshUser],
    by_item: Mapping[str, list[tuple[Event, Position]]],
    inputs: ItemInputs,
) -> list[TrendingItem]:
    """``shards`` (this batch's new trending shards) with each brand-new item's users and their vectors."""
    model = inputs.model
    if model is None or model.xtx is None:
        return shards
    index, solved, out = model.item_index, {u.user_id: u for u in users}, []
    for shard in shards:
        if shard.item_id in index:  # in the snapshot now: its terms are the nightly's
            out.append(shard if not shard.users else _with(shard, {}, None))
            continue
        before = inputs.trending.get(shard.key)
        old = before.positions if before is not None else {}
        terms = {u: t[0] for u, t in (before.users if before is not None else {}).items()}
        for event, pos in by_item.get(shard.key, ()):
            if pos[1] >= old.get(str(pos[0]), 0) and is_positive(event, inputs.weights):
                terms[event.user_id] = terms.get(event.user_id, 0.0) + event_weight(event, inputs.weights)
        if len(terms) > inputs.max_users:  # the strongest users carry the item
            terms = {u: terms[u] for u in heapq.nlargest(inputs.max_users, terms, key=terms.__getitem__)}
        fresh_basis = before is not None and before.basis == model.version
        kept = before.users if before is not None and fresh_basis else {}  # user -> [weight, *vector]
        users_out = {u: _terms(u, w, solved, kept, inputs, model) for u, w in terms.items()}
        out.append(_with(shard, users_out, model.version))
    return out


def _terms(
    user_id: str,
    weight: float,
    solved: dict[str, FreshUser],
    kept: dict[str, list[float]],
    inputs: ItemInputs,
    model: SnapshotModel,
) -> list[float]:
    """The user's ``[weight, *vector]`` in the item's shard: the shard's own list when neither changed (most of a
    hot item's users between two batches: no copy of their vectors), else built anew (:func:`_vector`)."""
    terms = kept.get(user_id)
    if terms is not None and len(terms) > 1 and terms[0] == weight:
        state = solved.get(user_id)
        if state is None or state.basis != model.version:  # not solved again in this batch: the vector stands
            return terms
    return [weight, *_vector(user_id, solved, kept, inputs, model)]


def _vector(
    user_id: str, solved: dict[str, FreshUser], kept: dict[str, list[float]], inputs: ItemInputs, model: SnapshotModel
) -> list[float]:
    """The user's fold-in vector against ``model``: just solved in this batch ([] when none of their items is in the
    snapshot: not solved again), kept from the shard (``kept``: its ``[weight, *vector]`` terms, sliced only for the
    users asked for), or solved again from their fresh state and batch row ([] when they have no interaction the
    snapshot knows)."""
    state = solved.get(user_id)
    if state is not None and state.basis == model.version:  # solved in this batch: none when no item is known
        return list(state.vector) if state.vector is not None else []
    if len(terms := kept.get(user_id, ())) > 1:
        return terms[1:]
    state = inputs.states.get(user_id) or FreshUser(user_id=user_id)
    again = rebase(state, model, inputs.history.get(user_id))
    return list(again.vector) if again.vector is not None else []


def _with(shard: TrendingItem, users: dict[str, list[float]], basis: str | None) -> TrendingItem:
    fields = {f: getattr(shard, f) for f in shard.__struct_fields__}
    return TrendingItem(**{**fields, "users": users, "basis": basis})
