"""Trending counts decayed in event time; the speed layer accumulates them, serving reads them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property
    def share(self) -> np.ndarray:
        """Every item's score over the largest (float32; all 0 without a positive score): the merge's trending
        component, computed once per refresh instead of per list."""
        if not self.order.size:
            return np.zeros(self.scores.size, dtype=np.float32)
        return self.scores / self.scores[self.order[0]]
