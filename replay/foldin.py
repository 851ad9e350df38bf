"""Fold-in vectors of a replay's fresh states, updated as events arrive instead of solved from scratch each time.

A replay solves the state of every scored event: the user's previous state plus the events since (mostly one).
The fold-in's normal equations (:mod:`lambdarec.model.foldin`) are ``A = YᵀY + λI + Σ (c_i − 1) y_i y_iᵀ`` and
``b = Σ c_i y_i`` over the user's distinct items, with ``c_i = 1 + α·w_i`` and ``w_i`` the item's summed weight
(batch history plus fresh events). A new event of weight ``w`` changes ``A`` by the rank-one term ``α·w·y yᵀ``
and ``b`` by ``α·w·y`` (plus ``y`` for an item new to the user), so the inverse of ``A`` is kept per user and
updated by the Sherman-Morrison formula: O(f²) per event instead of an O(n·f²) product and an O(f³) solve per
scored event. The vectors are those of :func:`lambdarec.model.freshstate.solve_many` within float rounding
(tested). A user's system is built from scratch whenever its state is not the one held plus new events (a flip,
feedback, events dropped by the bound, another history) and every ``refresh`` updates, so rounding never builds
up; the users held are bounded by the memory their systems take (inverse, events, items, batch row). A user
whose ``A`` is ill-conditioned (a tiny regularisation) is solved in full each time, as the speed layer does.

Example
-------
>>> solver = IncrementalFoldIn()                               # doctest: +SKIP
>>> solved = solver.solve_many(states, model, histories)       # doctest: +SKIP
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np
from msgspec import structs
from scipy.linalg.blas import dger

from lambdarec.model.foldin import confidence
from lambdarec.model.freshstate import FreshEvent, erased_for, uncovered
from lambdarec.model.freshstate import solve_many as full_solve
from lambdarec.model.rows import FreshUser, UserRow

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

_item, _weight = itemgetter(0), itemgetter(2)  # a fresh event's item id and weight
# 1-norm condition number of ``A`` above which a user is solved in full each time (BPR or torch MF snapshots with a
# tiny regularisation): rank-one updates of an explicit inverse would then differ from the solve beyond rounding
MAX_CONDITION = 1e5


@dataclass
class _System:
    """One user's fold-in system against one snapshot: the inverse of ``A``, ``b``, and what they hold."""

    version: str
    history: UserRow | None  # the batch row counted (None: none, or an erased one)
    events: list[FreshEvent]  # the fresh events counted, in order
    items: set[int]  # the distinct items counted (an item's first event adds ``y`` to ``b``)
    inverse: np.ndarray  # [f, f] float64, Fortran order
    b: np.ndarray  # [f] float64
    updates: int = 0  # rank-one updates since it was built

    def nbytes(self) -> int:
        """About what holding it costs: the inverse and ``b``, the events list, the item set, the batch row."""
        row = self.history
        held = 0 if row is None else sum(a.nbytes for a in (row.candidates, row.scores, row.history,
                                                             row.history_weights))  # fmt: skip
        return self.inverse.nbytes + self.b.nbytes + 8 * len(self.events) + 64 * len(self.items) + held + 512


class IncrementalFoldIn:
    """:func:`lambdarec.model.freshstate.solve_many` for a replay, with each user's system kept between calls."""

    def __init__(self, max_bytes: int = 64 << 20, refresh: int = 64) -> None:
        self.max_bytes = max_bytes
        self.refresh = refresh
        self._systems: OrderedDict[str, _System] = OrderedDict()  # least recently used first
        self._bytes = 0  # what the held systems cost (``_System.nbytes``)
        self._base: tuple[str, np.ndarray] | None = None  # a snapshot's version and its ``YᵀY + λI``

    def __len__(self) -> int:
        """How many users' systems are held."""
        return len(self._systems)

    def solve_many(
        self, states: Sequence[FreshUser], model: SnapshotModel, histories: Sequence[UserRow | None]
    ) -> list[FreshUser]:
        """Each state with its fold-in vector against ``model`` (None when it names no item ``model`` has) and
        stamped with its version, as :func:`lambdarec.model.freshstate.solve_many` gives it."""
        y, base = model.item_factors, self._base_of(model)  # rows read as float64 one at a time, not all copied
        alpha = float(model.solver.get("alpha", 1.0))
        out = []
        for state, history in zip(states, histories, strict=True):
            events = uncovered(state, model)[0]
            row = history if history is not None and not erased_for(state, model) else None
            system = self._systems.pop(state.user_id, None)
            if system is not None:
                self._bytes -= system.nbytes()
            if not (system is not None and self._extend(system, model, row, events, y, alpha)):
                system = self._build(model, state.user_id, row, events, y, base, alpha)
            if system is None:  # ill-conditioned: solved as the speed layer solves it, nothing kept
                out.append(full_solve([state], model, [history])[0])
                continue
            self._systems[state.user_id] = system
            self._bytes += system.nbytes()
            vector = (system.inverse @ system.b).astype(np.float32).tolist() if system.items else None
            out.append(structs.replace(state, vector=vector, basis=model.version))
        while self._bytes > self.max_bytes and len(self._systems) > 1:
            self._bytes -= self._systems.popitem(last=False)[1].nbytes()
        return out

    def _base_of(self, model: SnapshotModel) -> np.ndarray:
        """``YᵀY + λI`` in float64, once per snapshot."""
        if self._base is None or self._base[0] != model.version:
            f = model.item_factors.shape[1]
            base = np.asarray(model.yty, dtype=np.float64) + float(model.solver.get("regularization", 0.0)) * np.eye(f)
            self._base = (model.version, base)
            self._systems.clear()  # systems of another snapshot are never extended
            self._bytes = 0
        return self._base[1]

    def _extend(
        self,
        system: _System,
        model: SnapshotModel,
        row: UserRow | None,
        events: list[FreshEvent],
        y: np.ndarray,
        alpha: float,
    ) -> bool:
        """Add ``events``' new tail to ``system`` in place; False (and ``system`` unusable) when ``events`` is not
        the events it holds plus new ones, or it is due for a rebuild."""
        n = len(system.events)
        if (
            system.version != model.version
            or system.history is not row
            or len(events) < n
            or system.updates + len(events) - n > self.refresh
            or events[:n] != system.events
        ):
            return False
        index = model.item_index
        inverse, b = system.inverse, system.b
        for item_id, _, weight in events[n:]:
            i = index.get(item_id)
            if i is None:  # an item the snapshot lacks is left out, as the full solve does
                continue
            yi = y[i].astype(np.float64)
            delta = alpha * float(weight)
            if delta:
                u = inverse @ yi
                denominator = 1.0 + delta * float(yi @ u)
                if not denominator > 1e-9:  # a negative weight that (nearly) cancels the item: rebuild instead
                    return False
                # in place (BLAS rank-one update of the Fortran-ordered inverse: no [f, f] temporaries)
                inverse = system.inverse = dger(-delta / denominator, u, u, a=inverse, overwrite_a=True)
            b += (delta + (0.0 if i in system.items else 1.0)) * yi
            system.items.add(i)
        system.updates += len(events) - n
        system.events = events
        return True

    def _build(
        self,
        model: SnapshotModel,
        user_id: str,
        row: UserRow | None,
        events: list[FreshEvent],
        y: np.ndarray,
        base: np.ndarray,
        alpha: float,
    ) -> _System | None:
        """A user's system from scratch: the weights summed per item, as the full solve sums them. None when
        ``A`` is too ill-conditioned for an explicit inverse to give the full solve's vector within rounding."""
        n_items = len(model.item_ids)
        found = np.fromiter(map(model.item_index.get, map(_item, events), repeat(-1)), np.int64, count=len(events))
        weights = np.fromiter(map(_weight, events), dtype=np.float64, count=len(events))
        keys, values = [found[found >= 0]], [weights[found >= 0]]
        if row is not None:
            seen = np.asarray(row.history, dtype=np.int64)
            if seen.size and (seen.min() < 0 or seen.max() >= n_items):
                raise ValueError(f"batch row of user {user_id!r} names items outside [0, {n_items})")
            keys.append(seen)
            values.append(np.asarray(row.history_weights, dtype=np.float64))
        items, where = np.unique(np.concatenate(keys), return_inverse=True)
        conf = confidence(np.bincount(where, weights=np.concatenate(values), minlength=items.size), alpha)
        yu = y[items].astype(np.float64)
        a = base + (yu * (conf - 1.0)[:, None]).T @ yu
        # with no item yet, ``A`` is the base: its inverse is what the user's first events update
        inverse = np.asfortranarray(np.linalg.inv(a))  # Fortran order: dger updates it in place
        if np.linalg.norm(a, 1) * np.linalg.norm(inverse, 1) > MAX_CONDITION:
            return None
        return _System(model.version, row, events, set(items.tolist()), inverse, yu.T @ conf)
