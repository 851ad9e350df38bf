"""A user's fresh state solved against a snapshot: shared by the speed layer (writes it) and serving (reads it).

Serving re-solves a state whose basis is an older snapshot in-process, so a flip never serves a vector from the
wrong item space, even for users with no event since the flip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lambdarec.model.foldin import confidence, fold_in_many
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.store.base import FreshUser, UserRow


def rebase(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> FreshUser:
    """Re-solve ``state`` against a new snapshot: events at or before its cut-off are dropped (the batch has them)."""
    if state.basis == model.version:
        return state
    kept = [e for e in state.events if e[1] > model.cutoff_s]
    return solve(replace(state, events=kept), model, history)


def solve(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> FreshUser:
    """The fold-in vector from the batch history plus fresh events after the cut-off, stamped with the basis."""
    return solve_many([state], model, [history])[0]


def solve_many(
    states: Sequence[FreshUser], model: SnapshotModel, histories: Sequence[UserRow | None]
) -> list[FreshUser]:
    """:func:`solve` for many users with one batched solve (the speed layer's hot path)."""
    alpha = model.solver.get("alpha", 1.0)
    problems, solvable = [], []
    for state, history in zip(states, histories, strict=True):
        totals = _weights(state, model, history)
        solvable.append(bool(totals))
        items = np.fromiter(totals, dtype=np.int64, count=len(totals))
        problems.append((items, confidence(np.fromiter(totals.values(), dtype=np.float64, count=len(totals)), alpha)))
    vectors = fold_in_many(model.item_factors, model.yty, problems, model.solver.get("regularization", 0.0))
    return [
        replace(state, vector=vectors[n].tolist() if ok else None, basis=model.version)
        for n, (state, ok) in enumerate(zip(states, solvable, strict=True))
    ]


def _weights(state: FreshUser, model: SnapshotModel, history: UserRow | None) -> dict[int, float]:
    """Summed weight per item index: batch history plus fresh events after the snapshot's cut-off."""
    totals: dict[int, float] = {}
    if history is not None:
        for i, w in zip(history.history.tolist(), history.history_weights.tolist(), strict=True):
            totals[i] = totals.get(i, 0.0) + w
    index = model.item_index
    for item_id, ts, w in state.events:
        if ts > model.cutoff_s and (i := index.get(item_id)) is not None:
            totals[i] = totals.get(i, 0.0) + w
    return totals


def replace(state: FreshUser, **changes: object) -> FreshUser:
    fields = {f: getattr(state, f) for f in state.__struct_fields__}
    fields.update(changes)
    return FreshUser(**fields)
