"""Item popularity: summed interaction weight over the whole window and over a recent window, in event time.

"Recent" means the ``batch.popularity_recent_days`` before ``as_of``, which defaults to the newest event's own
timestamp, never the wall clock, so a replay of an old log computes what the batch job computed then.

Example
-------
>>> import polars as pl

from batch_layer.matrix import index_of
>>> ev = pl.DataFrame({"item_index": [0, 1, 1], "ts": [0, 9 * 86_400_000, 10 * 86_400_000], "weight": [5.0, 1, 1]})
>>> p = popularity(ev, n_items=3, recent_days=7)
>>> p.all_time.tolist(), p.recent.tolist(), ranking(p.recent).tolist()
([5.0, 2.0, 0.0], [0.0, 2.0, 0.0], [1, 0, 2])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from batch_layer.matrix import index_of

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Popularity:
    """float32 ``[n_items]`` summed weights: ``all_time`` (every event up to ``as_of_ms``) and ``recent`` (the
    ``recent_days`` before ``as_of_ms``)."""

    all_time: np.ndarray
    recent: np.ndarray
    as_of_ms: int
    recent_days: float


def popularity(
    events: pl.DataFrame | None = None,
    *,
    n_items: int,
    recent_days: float,
    item_index: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    as_of_ms: int | None = None,
) -> Popularity:
    """Sum interaction weights per item, all time and over the recent window.

    Parameters
    ----------
    events
        A frame with ``item_index`` (int, ``0..n_items-1``), ``ts`` (epoch ms, Int64) and optionally ``weight``;
        or give the same as numpy arrays ``item_index``, ``ts``, ``weight``.
    n_items
        Catalogue size (items without events score 0).
    recent_days
        Length of the recent window (``batch.popularity_recent_days``).
    as_of_ms
        End of both windows (events after it are ignored); default: the newest event's ``ts``.

    Example
    -------
    >>> popularity(item_index=np.array([2]), ts=np.array([5]), n_items=3, recent_days=1).all_time.tolist()
    [0.0, 0.0, 1.0]
    """
    if events is not None:
        missing = {"item_index", "ts"} - set(events.columns)
        if missing:
            raise ValueError(f"events lacks column(s) {sorted(missing)}; expected item_index, ts and weight")
        item_index = events["item_index"].to_numpy()
        ts = events["ts"].to_numpy()
        weight = events["weight"].to_numpy() if "weight" in events.columns else None
    if item_index is None or ts is None:
        raise ValueError("give either events or the item_index and ts arrays")
    item_index = np.asarray(item_index, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    w = np.ones(len(item_index), np.float64) if weight is None else np.asarray(weight, dtype=np.float64)
    if not len(item_index) == len(ts) == len(w):
        raise ValueError(f"item_index ({len(item_index)}), ts ({len(ts)}) and weight ({len(w)}) differ in length")
    if item_index.size and (item_index.min() < 0 or item_index.max() >= n_items):
        raise ValueError(f"item_index must lie in [0, {n_items}); got [{item_index.min()}, {item_index.max()}]")
    if recent_days <= 0:
        raise ValueError(f"recent_days must be > 0; got {recent_days}")
    end = int(ts.max()) if as_of_ms is None and ts.size else int(as_of_ms or 0)
    upto = ts <= end
    recent = upto & (ts > end - int(recent_days * _DAY_MS))
    return Popularity(
        all_time=np.bincount(item_index[upto], w[upto], minlength=n_items).astype(np.float32),
        recent=np.bincount(item_index[recent], w[recent], minlength=n_items).astype(np.float32),
        as_of_ms=end,
        recent_days=float(recent_days),
    )


def frame_popularity(
    frame: pl.DataFrame, item_ids: np.ndarray, recent_days: float, as_of_ms: int | None = None
) -> Popularity:
    """:func:`popularity` of a canonical interaction frame (``item_id``, ``ts``, ``weight``), its items joined to
    their positions in the sorted ``item_ids`` of the matrix built from it."""
    return popularity(
        item_index=index_of(frame["item_id"], item_ids),
        ts=frame["ts"].to_numpy(),
        weight=frame["weight"].to_numpy(),
        n_items=len(item_ids),
        recent_days=recent_days,
        as_of_ms=as_of_ms,
    )


def ranking(scores: np.ndarray) -> np.ndarray:
    """Item indices by descending score, ties to the lower index (int32).

    Example
    -------
    >>> ranking(np.array([1.0, 3.0, 1.0])).tolist()
    [1, 0, 2]
    """
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").astype(np.int32)
