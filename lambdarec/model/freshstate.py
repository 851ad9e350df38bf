"""A user's fresh state solved against a snapshot: shared by the speed layer (writes it) and serving (reads it).

Serving re-solves a state whose basis is an older snapshot in-process, so a flip never serves a vector from the
wrong item space, even for users with no event since the flip. What the snapshot already has is decided by log
position (:meth:`SnapshotModel.covers`): a fresh event is dropped only when the snapshot's input covered its
position, whatever its event time, so a late event is counted once, by fresh state until a snapshot has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np
from msgspec import structs

from lambdarec.model.foldin import confidence, fold_in_segments
from lambdarec.model.rows import FreshUser, UserRow

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

FreshEvent = tuple[str, float, float]
_item, _weight = itemgetter(0), itemgetter(2)  # a fresh event's item id and weight


def positions_of(state: FreshUser) -> list[tuple[int, int] | None]:
    """The log position of each fresh event, None for entries recorded before positions were kept."""
    n = len(state.events)
    if not n:
        return []
    tail = state.event_positions[-n:]
    if tail and type(tail[0]) is tuple and type(tail[-1]) is tuple and len(tail) == n:
        return list(tail)  # decoded rows and the speed layer's own states already hold (int, int) tuples
    known: list[tuple[int, int] | None] = [(int(p), int(o)) for p, o in tail]
    return [None] * (n - len(known)) + known


def uncovered(state: FreshUser, model: SnapshotModel | None) -> tuple[list[FreshEvent], list[tuple[int, int]]]:
    """The fresh events (and their positions) that ``model``'s snapshot does not have."""
    if model is None:
        return list(state.events), list(state.event_positions)
    known = positions_of(state)
    if not model.log_positions and (not known or known[0] is not None):
        # every event has a position and the snapshot read no log: it covers none of them (the common case,
        # checked per request, so without a call per event)
        return list(state.events), known  # type: ignore[return-value]
    events, positions = [], []
    for event, pos in zip(state.events, known, strict=True):
        if not model.covers(pos, event[1]):
            events.append(event)
            if pos is not None:
                positions.append(pos)
    return events, positions


def erased_for(state: FreshUser | None, model: SnapshotModel) -> bool:
    """Whether ``state`` is a tombstone that ``model`` predates: its batch row must not be used."""
    return state is not None and state.erased_at is not None and model.built_at_s < state.erased_at


def rebase(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> FreshUser:
    """Re-solve ``state`` against a new snapshot, dropping the fresh events whose log position it covers."""
    if state.basis == model.version:
        return state
    events, positions = uncovered(state, model)
    return solve(replace(state, events=events, event_positions=positions), model, history)


def solve(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> FreshUser:
    """The fold-in vector from the batch history plus the fresh events it lacks, stamped with the basis."""
    return solve_many([state], model, [history])[0]


def solve_many(
    states: Sequence[FreshUser], model: SnapshotModel, histories: Sequence[UserRow | None]
) -> list[FreshUser]:
    """:func:`solve` for many users with one batched solve (the speed layer's hot path): the users' weights are
    summed per (user, item) in one vectorised pass and their fold-ins solved together (:func:`fold_in_segments`)."""
    index = model.item_index
    n_items = len(model.item_ids)
    names: list[str] = []  # every user's uncovered fresh events laid end to end: one lookup pass for the batch
    fresh_weights: list[float] = []
    per_user: list[int] = []
    seen, seen_weights, seen_of = [], [], []  # batch histories, and whose
    for u, (state, history) in enumerate(zip(states, histories, strict=True)):
        events = uncovered(state, model)[0]
        names.extend(map(_item, events))  # map over the events: no Python frame per event
        fresh_weights.extend(map(_weight, events))
        per_user.append(len(events))
        if history is not None and not erased_for(state, model):
            seen.append(history.history)
            seen_weights.append(history.history_weights)
            seen_of.append(u)
    found = np.fromiter(map(index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
    owner = np.repeat(np.arange(len(states), dtype=np.int64) * n_items, per_user)
    known = found >= 0  # items the snapshot lacks are left out
    # one key per (user, item): users stay in order once the keys are sorted; each key's weights are summed in
    # the same order as one user at a time would (fresh events, then the batch history)
    keys = [found[known] + owner[known]]
    weights = [np.asarray(fresh_weights, dtype=np.float64)[known]]
    if seen:
        lengths = np.fromiter(map(len, seen), dtype=np.int64, count=len(seen))
        items = np.concatenate(seen).astype(np.int64)
        if (outside := (items < 0) | (items >= n_items)).any():  # would name another user's entries
            user = states[seen_of[int(np.searchsorted(np.cumsum(lengths), np.argmax(outside), side="right"))]]
            raise ValueError(f"batch row of user {user.user_id!r} names items outside [0, {n_items})")
        keys.append(items + np.repeat(np.asarray(seen_of, dtype=np.int64) * n_items, lengths))
        weights.append(np.concatenate(seen_weights).astype(np.float64))
    flat = np.concatenate(keys)
    distinct, where = np.unique(flat, return_inverse=True)
    totals = np.bincount(where, weights=np.concatenate(weights), minlength=distinct.size)
    counts = np.bincount(distinct // max(n_items, 1), minlength=len(states))
    conf = confidence(totals, model.solver.get("alpha", 1.0))
    vectors = fold_in_segments(
        model.item_factors, model.yty, distinct % max(n_items, 1), conf, counts, model.solver.get("regularization", 0.0)
    )
    rows, solved = vectors.tolist(), counts.tolist()  # one conversion, not one per user
    return [
        structs.replace(state, vector=rows[n] if solved[n] else None, basis=model.version)
        for n, state in enumerate(states)
    ]


def replace(state: FreshUser, **changes: object) -> FreshUser:
    fields = {f: getattr(state, f) for f in state.__struct_fields__}
    fields.update(changes)
    return FreshUser(**fields)
