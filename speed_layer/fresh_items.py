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

import numpy as np

from lambdarec.events import Event
from lambdarec.model.freshstate import rebase
from lambdarec.model.rows import NO_TERMS, FreshUser, ShardTerms, TrendingItem, UserRow
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
    return sorted({u for s in shards if s.basis != model.version and s.item_id not in index for u in s.term_users})


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
            out.append(shard if not shard.term_users else shard.with_terms(NO_TERMS, basis=None))
            continue
        before = inputs.trending.get(shard.key)
        old = before.positions if before is not None else {}
        prior = before.terms if before is not None else NO_TERMS
        terms = dict(zip(prior.users, prior.weights.tolist(), strict=True))
        for event, pos in by_item.get(shard.key, ()):
            if pos[1] >= old.get(str(pos[0]), 0) and is_positive(event, inputs.weights):
                terms[event.user_id] = terms.get(event.user_id, 0.0) + event_weight(event, inputs.weights)
        if len(terms) > inputs.max_users:  # the strongest users carry the item
            terms = {u: terms[u] for u in heapq.nlargest(inputs.max_users, terms, key=terms.__getitem__)}
        kept = prior if before is not None and before.basis == model.version else NO_TERMS
        out.append(shard.with_terms(_terms(terms, solved, kept, inputs, model), basis=model.version))
    return out


def _terms(
    weights: dict[str, float], solved: dict[str, FreshUser], kept: ShardTerms, inputs: ItemInputs, model: SnapshotModel
) -> ShardTerms:
    """The shard's users with their ``weights`` and each one's fold-in vector against ``model``: solved in this
    batch (none when none of their items is in the snapshot: not solved again), else kept from the shard (``kept``:
    its terms when stamped with ``model``; most of a hot item's users between two batches, copied as one array),
    else solved again from their fresh state and batch row (none when they have no interaction the snapshot
    knows)."""
    users = list(weights)
    n, f = len(users), model.item_factors.shape[1]
    vectors = np.full((n, f), np.nan, dtype=np.float32)
    done = np.zeros(n, dtype=bool)
    if len(kept) and kept.vectors.shape[1] == f:
        at = kept.index()
        rows = np.fromiter((at.get(u, -1) for u in users), dtype=np.int64, count=n)
        has = rows >= 0
        has[has] = kept.with_vector[rows[has]]
        vectors[has] = kept.vectors[rows[has]]
        done |= has
    for i, user_id in enumerate(users):
        state = solved.get(user_id)
        if state is not None and state.basis == model.version:  # solved in this batch
            vectors[i] = state.vector if state.vector is not None else np.nan
            done[i] = True
    for i in np.flatnonzero(~done).tolist():
        user_id = users[i]
        again = rebase(inputs.states.get(user_id) or FreshUser(user_id=user_id), model, inputs.history.get(user_id))
        if again.vector is not None:
            vectors[i] = again.vector
    return ShardTerms(users, np.fromiter(weights.values(), dtype=np.float64, count=n), vectors)
