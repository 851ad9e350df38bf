"""The array steps of one request's merge (:func:`lambdarec.rank.one.rank_one`) fused into one compiled pass
(numba): the pool, its score components, the totals and the ordering, over the catalogue's arrays without a numpy
call per step.

Serving ranks one list per request, and over a catalogue of a few thousand items the numpy steps cost a few
microseconds each in calls, not in arithmetic: about 200 us of the merge's 250 went to some forty calls
(serve benchmark, 1,000 items). Here each step is a loop over the pool or the catalogue.

What it computes is :func:`lambdarec.rank.one.rank_numpy`'s answer, with these rules written down:

- the fresh vector's ``speed_top_n`` best unseen items are chosen with ties at the last place going to the lowest
  item indices (``argpartition`` leaves that choice undefined);
- the session's taste vector is summed in float32 in seed order, and each pooled item's cosine to it in vector
  lanes whose grouping follows the CPU, not BLAS's blocks (so a score may differ from the numpy steps' in float32
  rounding, as the block merge's do);
- everything else (sources and their precedence, the popular fill, min-max scaling, weights cast to float32, the
  order by score, then popularity, then item index) is the numpy steps' exactly.

A request the kernel does not take answers ``None`` and the numpy steps rank it: a non-finite score or factor
met on the way (those count as defects there), which a finite model and fresh vector never give, or an item index
outside the catalogue (numba does not check indices; the numpy steps raise the IndexError they always raised).

The loops are :mod:`lambdarec.rank.fused_kernels`; this module hands them the request's arrays. Importing it loads
numba; :func:`warm` compiles the kernel or loads it from numba's cache (:mod:`lambdarec.compiled`).
:mod:`lambdarec.rank.kernel` decides when that happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import UserRow
from lambdarec.rank.fused_kernels import TAKEN
from lambdarec.rank.fused_kernels import rank as _rank

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def rank_fused(
    model: SnapshotModel,
    had: np.ndarray,
    eligible: np.ndarray | None,
    trend: tuple[np.ndarray, int, np.ndarray | None],
    seeds: tuple[np.ndarray, np.ndarray | None, int],
    speed: tuple[np.ndarray | None, int],
    batch_row: UserRow | None,
    weights: tuple[float, float, float],
    need: int,
    offset: int,
    order_it: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray] | None:
    """(items, totals, first sources, components, picks) of one request, or None where the numpy steps must rank
    it. ``had``: the items it has seen (:func:`lambdarec.rank.pool.prepare`); ``trend``: (order, top_n, share or
    None: not weighted); ``seeds``: (items, decay or None: no session component, neighbours per seed);
    ``speed``: (every item's score or None, top_n); ``weights``: cf, session, trending; ``picks`` (positions in
    items, best first, ``offset`` on) only when ``order_it``.

    Every array goes to the kernel as a read-only C array of one dtype, so that one compiled signature serves
    every caller (a writable or an int64 copy would compile the kernel again, for seconds, at its first call).
    """
    snap = _snapshot(model)
    order, trending_top_n, share = trend
    trending = _trending(order, share, snap.n_items)
    seed_items, decay, per_seed = seeds
    scores, speed_top_n = speed
    if trending is None or not snap.fit or not _sized(snap.n_items, eligible, share, scores, batch_row):
        return None  # an index outside the catalogue, or arrays of another size: numba would read past them
    status, items, codes, values, chosen = _rank(
        snap.n_items, _fixed(had, _I64), _fixed(eligible, _BOOL), trending[0], trending_top_n,
        trending[1], _fixed(seed_items, _I64), _fixed(decay, _F32), snap.neighbours, per_seed,
        _fixed(scores, _F32), speed_top_n, _fixed(np.ravel(batch_row.candidates) if batch_row else None, _I32),
        _fixed(np.ravel(batch_row.scores) if batch_row else None, _F32), snap.popular_order, snap.popular_rank,
        snap.unit,
        np.float32(weights[0]), np.float32(weights[1]), np.float32(weights[2]), need, offset, order_it, snap.index,
    )  # fmt: skip
    if status != TAKEN:
        return None
    return items, values[0], codes, {"cf": values[1], "session": values[2], "trending": values[3]}, chosen


_I32, _I64, _F32, _BOOL = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.bool_)
_EMPTY = {dtype: np.empty(0, dtype) for dtype in (_I32, _I64, _F32, _BOOL)}
for _array in _EMPTY.values():
    _array.flags.writeable = False


def _fixed(x: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """``x`` as the kernel takes it: a read-only C-contiguous array of ``dtype`` (a view; a copy only where the
    dtype or layout differs); an empty one for None."""
    if x is None:
        return _EMPTY[dtype]
    flags = x.flags
    if x.dtype != dtype or not flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=dtype)
        flags = x.flags
    if flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


@dataclass(frozen=True)
class _Snapshot:
    """A snapshot's arrays as the kernel takes them (see :func:`_fixed`), made once per snapshot (its popularity
    order and neighbours are the snapshot's own: the kernel does not check them per request)."""

    model: SnapshotModel
    n_items: int
    neighbours: np.ndarray
    popular_order: np.ndarray
    popular_rank: np.ndarray
    unit: np.ndarray
    index: np.ndarray  # arange(n_items): the speed source's tie-break by item index
    fit: bool  # every array has a row per item and the popularity order names only items


_last: list[_Snapshot | None] = [None]  # the last snapshot's, swapped whole: threads never see half of one


def _snapshot(model: SnapshotModel) -> _Snapshot:
    snap = _last[0]
    if snap is None or snap.model is not model:
        n_items = len(model.item_ids)
        neighbours = model.neighbours if model.neighbours.ndim == 2 else model.neighbours.reshape(n_items, -1)
        order, unit = model.popular_order, model.unit_factors
        fit = neighbours.shape[0] == unit.shape[0] == order.size == n_items  # else the numpy steps rank
        fit = fit and (not n_items or (int(order.min()) >= 0 and int(order.max()) < n_items))
        snap = _Snapshot(model, n_items, _fixed(neighbours, _I32), _fixed(order, _I32),
                         _fixed(model.popular_rank, _I64), _fixed(unit, _F32), _fixed(np.arange(n_items), _I64),
                         fit)  # fmt: skip
        _last[0] = snap
    return snap


def _sized(
    n_items: int,
    eligible: np.ndarray | None,
    share: np.ndarray | None,
    scores: np.ndarray | None,
    row: UserRow | None,
) -> bool:
    """Whether the request's per-item arrays cover the catalogue, and its batch row has a score per candidate."""
    return (
        (eligible is None or eligible.shape == (n_items,))
        and (share is None or share.shape == (n_items,))
        and (scores is None or scores.shape == (n_items,))
        and (row is None or np.size(row.candidates) == np.size(row.scores))
    )


_UNSEEN = object()  # matches no trending order (None included)
_last_trend: list[tuple[object, object, int, tuple[np.ndarray, np.ndarray] | None]] = [(_UNSEEN, _UNSEEN, 0, None)]


def _trending(order: np.ndarray | None, share: np.ndarray | None, n_items: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The trending order and share as the kernel takes them, None when the order names an item outside the
    catalogue of ``n_items``; checked once per trending refresh and catalogue (the same arrays come with every
    request until the next)."""
    last_order, last_share, last_n, fixed = _last_trend[0]
    if last_order is order and last_share is share and last_n == n_items:
        return fixed
    fixed = None
    if order is None or not order.size or (int(order.min()) >= 0 and int(order.max()) < n_items):
        fixed = (_fixed(order, _I64), _fixed(share, _F32))
    _last_trend[0] = (order, share, n_items, fixed)
    return fixed


def warm() -> None:
    """Compile the kernel (or load it from numba's cache) now (:mod:`lambdarec.rank.kernel` says when): ranks one
    request over a two-item catalogue with every source present."""
    i64, f32 = _fixed(np.array([0, 1]), _I64), _fixed(np.array([1.0, 0.5]), _F32)
    _rank(2, i64[:1], _fixed(np.array([True, True]), _BOOL), i64, 1, f32, i64[:1], f32[:1],
          _fixed(np.array([[1], [0]]), _I32), 1, f32, 1, _fixed(np.array([1]), _I32), f32[:1], _fixed(i64, _I32),
          i64, _fixed(np.eye(2), _F32), np.float32(1.0), np.float32(0.5), np.float32(0.1), 1, 0, True, i64)  # fmt: skip
