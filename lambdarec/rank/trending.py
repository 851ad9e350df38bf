"""Trending counts decayed in event time; the speed layer accumulates them, serving reads them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import TrendingItem
from lambdarec.rank.defects import FLOAT32_MAX, count_nonfinite, finite_or_zero

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def decayed(count: float, from_s: float, to_s: float, half_life_s: float) -> float:
    """``count`` at time ``from_s`` seen from the later time ``to_s``: halves every ``half_life_s``.

    Example
    -------
    >>> decayed(8.0, 0.0, 20.0, 10.0)
    2.0
    """
    return count * math.exp2(-max(to_s - from_s, 0.0) / half_life_s)


def _live_count(t: TrendingItem, now_s: float, half_life_s: float) -> float:
    """A shard's count decayed to ``now_s``; 0 (and counted) when it is not a finite, non-negative float32."""
    try:
        value = decayed(t.count, t.as_of, now_s, half_life_s)
    except (OverflowError, ValueError):
        value = math.nan
    if not (0.0 <= value <= FLOAT32_MAX):  # also false for NaN
        count_nonfinite("trending")
        return 0.0
    return value


def trending_scores(
    rows: dict[str, TrendingItem], model: SnapshotModel, now_s: float, half_life_s: float
) -> np.ndarray:
    """Counts decayed to ``now_s``, shards added up, as float32 over the snapshot's items (others left out).

    A shard whose count is NaN, infinite, negative or beyond float32 is a defect: it counts 0 (and is counted in
    ``lambdarec_rank_nonfinite_total``), so one poisoned row never hides the other items.
    """
    out = np.zeros(len(model.item_ids), dtype=np.float64)
    index = model.item_index
    for t in rows.values():
        if (i := index.get(t.item_id)) is not None:
            out[i] += _live_count(t, now_s, half_life_s)
    return finite_or_zero(out, "trending")[0].astype(np.float32)


def total_counts(rows: dict[str, TrendingItem], now_s: float, half_life_s: float) -> dict[str, float]:
    """Every item's count decayed to ``now_s``, its shards added up; items the snapshot lacks included."""
    out: dict[str, float] = {}
    for t in rows.values():
        out[t.item_id] = out.get(t.item_id, 0.0) + _live_count(t, now_s, half_life_s)
    return out


@dataclass(frozen=True)
class TrendingScores:
    """Trending scores over a snapshot's items with their order precomputed once per refresh, not per request.

    Example
    -------
    >>> TrendingScores.of(np.array([0.0, 2.0, 1.0], np.float32)).order.tolist()
    [1, 2]
    """

    scores: np.ndarray  # float32 [n_items]
    order: np.ndarray  # int64 item indices with a positive score, highest first (ties by index)

    @classmethod
    def of(cls, scores: np.ndarray, where: str = "merge") -> TrendingScores:
        """Order ``scores``; NaN, inf and negative values count 0 (and are counted at ``where``)."""
        scores, _ = finite_or_zero(np.asarray(scores, dtype=np.float32), where)
        scores = np.maximum(scores, 0, dtype=np.float32)
        live = np.flatnonzero(scores > 0)
        # one key per item, highest score first and ties by index: a positive float32's bits order as the float
        # does, so (bits << 32) - index is unique and the faster unstable sort gives the stable order
        key = (scores[live].view(np.int32).astype(np.int64) << 32) - live
        return cls(scores, live[np.argsort(-key)])


class TrendingOrder:
    """Trending counts over a snapshot's items, kept in score order as counts change one item at a time.

    A count decayed in event time keeps its rank whatever the time it is seen from: ``count * 2 ** (-(now - as_of)
    / half_life)`` orders as ``log2(count) + as_of / half_life`` does. So the order moves only where a count
    changes, one item at a time, instead of a sort of every item at each read. :meth:`at` reads the float32
    scores in that order and puts equal ones (float32 rounding, counts decayed below its range) by index, so it
    always equals ``TrendingScores.of(self.scores(now_s))``.

    Example
    -------
    >>> order = TrendingOrder(3, half_life_s=10.0)
    >>> order.set(1, 2.0, 0.0); order.set(2, 2.0, 10.0)
    >>> order.at(10.0).order.tolist(), order.scores(10.0).tolist()
    ([2, 1], [0.0, 1.0, 2.0])
    """

    def __init__(self, n_items: int, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.count = np.zeros(n_items, dtype=np.float64)
        self.as_of = np.zeros(n_items, dtype=np.float64)
        self._order = np.arange(n_items, dtype=np.int64)  # every item, highest key first, equal keys by index
        self._key = np.full(n_items, np.inf)  # -(log2(count) + as_of / half_life) of each place of the order
        self._odd = 0  # items whose count is not a finite float >= 0: read through TrendingScores.of

    def set(self, i: int, count: float, as_of: float) -> None:
        """Item ``i``'s count is now ``count`` as of ``as_of`` (event time, seconds)."""
        self._odd += int(_odd(count)) - int(_odd(self.count[i]))
        self.count[i], self.as_of[i] = count, as_of
        key = -(math.log2(count) + as_of / self.half_life_s) if 0.0 < count < math.inf else math.inf
        order, keys, last = self._order, self._key, self._order.size - 1
        at = int(np.flatnonzero(order == i)[0])
        order[at:last], keys[at:last] = order[at + 1 :], keys[at + 1 :]  # out of the order (numpy copies overlaps)
        to = int(np.searchsorted(keys[:last], key))
        if to < last and keys[to] == key:  # equal keys: by index
            to += int(np.searchsorted(order[to : np.searchsorted(keys[:last], key, "right")], i))
        order[to + 1 :], keys[to + 1 :] = order[to:last], keys[to:last]  # ...and back in at its key's place
        order[to], keys[to] = i, key

    def scores(self, now_s: float) -> np.ndarray:
        """The counts decayed to ``now_s``, float32 per item."""
        age = np.maximum(now_s - self.as_of, 0.0)
        return (self.count * np.exp2(-age / self.half_life_s)).astype(np.float32)

    def at(self, now_s: float, where: str = "merge") -> TrendingScores:
        """``TrendingScores.of(self.scores(now_s))``, without sorting every item."""
        scores = self.scores(now_s)
        s = scores[self._order]
        live = int(np.count_nonzero(s > 0))
        if self._odd or (live and not s[0] <= FLOAT32_MAX) or s[live:].any():  # defects, or rounding off order
            return TrendingScores.of(scores, where)
        order = self._order[:live]
        key = (s[:live].view(np.int32).astype(np.int64) << 32) - order  # as TrendingScores.of orders them
        if live > 1 and not (key[:-1] > key[1:]).all():  # equal float32 scores: by index
            order = order[np.argsort(-key, kind="stable")]  # nearly sorted already: one quick merge pass
        return TrendingScores(scores, order.copy())


def _odd(count: float) -> bool:
    """Whether a count is a defect: NaN, infinite or negative."""
    return not 0.0 <= count < math.inf
