"""A user's fresh state solved against a snapshot: shared by the speed layer (writes it) and serving (reads it).

Serving re-solves a state whose basis is an older snapshot in-process, so a flip never serves a vector from the
wrong item space, even for users with no event since the flip. What the snapshot already has is decided by log
position (:meth:`SnapshotModel.covers`): a fresh event is dropped only when the snapshot's input covered its
position, whatever its event time, so a late event is counted once, by fresh state until a snapshot has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.foldin import confidence, fold_in_many
from lambdarec.model.rows import FreshUser, UserRow

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

FreshEvent = tuple[str, float, float]


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
    """:func:`solve` for many users with one batched solve (the speed layer's hot path)."""
    alpha = model.solver.get("alpha", 1.0)
    problems, solvable = [], []
    for state, history in zip(states, histories, strict=True):
        items, totals = _weights(state, model, None if erased_for(state, model) else history)
        solvable.append(bool(items.size))
        problems.append((items, confidence(totals, alpha)))
    vectors = fold_in_many(model.item_factors, model.yty, problems, model.solver.get("regularization", 0.0))
    return [
        replace(state, vector=vectors[n].tolist() if ok else None, basis=model.version)
        for n, (state, ok) in enumerate(zip(states, solvable, strict=True))
    ]


def _weights(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct item indices and their summed weight: batch history plus the fresh events the snapshot does not
    cover (vectorised: the speed layer and replay solve on every event)."""
    index = model.item_index
    fresh = [(i, w) for item_id, _ts, w in uncovered(state, model)[0] if (i := index.get(item_id)) is not None]
    parts_i = [np.fromiter((i for i, _ in fresh), dtype=np.int64, count=len(fresh))]
    parts_w = [np.fromiter((w for _, w in fresh), dtype=np.float64, count=len(fresh))]
    if history is not None:
        parts_i.insert(0, np.asarray(history.history, dtype=np.int64))
        parts_w.insert(0, np.asarray(history.history_weights, dtype=np.float64))
    idx, weights = np.concatenate(parts_i), np.concatenate(parts_w)
    if idx.size == 0:
        return idx, weights
    n = len(model.item_ids)  # indices are < n: counting per item is cheaper than np.unique's sort
    items = np.flatnonzero(np.bincount(idx, minlength=n))
    return items, np.bincount(idx, weights=weights, minlength=n)[items]


def replace(state: FreshUser, **changes: object) -> FreshUser:
    fields = {f: getattr(state, f) for f in state.__struct_fields__}
    fields.update(changes)
    return FreshUser(**fields)
