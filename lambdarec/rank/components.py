"""The re-rank's score components of each pooled item, and the explanations that name why an item is there.

Pure functions of the snapshot model and what the merge pooled (see :mod:`lambdarec.rank.merge`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import FreshUser
from lambdarec.rank.defects import finite_or_zero
from lambdarec.rank.memo import fresh_scores
from lambdarec.rank.trending import TrendingScores

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def score_components(
    model: SnapshotModel,
    scores: TrendingScores | None,
    items: np.ndarray,
    *,
    vector: np.ndarray | None,
    batch_scores: np.ndarray,
    seeds: dict[int, float],
    trending: bool = True,
    fresh: FreshUser | None = None,
) -> dict[str, np.ndarray]:
    """The ``cf``, ``session`` and ``trending`` components of each pooled item, finite, ``cf`` min-max scaled.

    ``scores`` are the trending scores ordered once per request (or None); ``seeds`` the session and recent items
    with their recency weights; ``trending`` False leaves that component 0 (its weight is 0 and nobody asked);
    ``fresh`` the state ``vector`` was read from (its scores of every item are kept for the next variant).
    """
    if vector is not None:
        cf = fresh_scores(model, fresh, vector)[items] if fresh is not None else model.item_factors[items] @ vector
    else:
        known = ~np.isnan(batch_scores)
        floor = float(batch_scores[known].min()) if known.any() else 0.0
        cf = np.where(known, batch_scores, floor).astype(np.float32)
    parts = {"cf": finite_or_zero(np.asarray(cf, dtype=np.float32), "merge")[0]}
    zeros = np.zeros(items.size, dtype=np.float32)
    parts["session"] = parts["trending"] = zeros  # a part not asked for is 0: nothing to check
    if seeds:
        unit = model.unit_factors
        seed_idx = np.fromiter(seeds, dtype=np.int64)
        decay = np.fromiter(seeds.values(), dtype=np.float32)
        if decay.sum() > 0:  # seeds older than ~150 half-lives all decay to 0.0 in float32: 0/0 would be NaN
            session = (unit[items] @ unit[seed_idx].T) @ decay / decay.sum()
            parts["session"] = finite_or_zero(np.asarray(session, dtype=np.float32), "merge")[0]
    if trending and scores is not None and scores.order.size:
        trend = scores.scores[items] / scores.scores[scores.order[0]]
        parts["trending"] = finite_or_zero(np.asarray(trend, dtype=np.float32), "merge")[0]
    parts["cf"] = minmax(parts["cf"])
    return parts


def minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1]; all ones when it is constant."""
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x, dtype=np.float32) if hi - lo < 1e-12 else ((x - lo) / (hi - lo)).astype(np.float32)


def nearest_seed(model: SnapshotModel, items: np.ndarray, seeds: dict[int, float]) -> np.ndarray:
    """For each item, the seed it is most similar to (-1 without seeds): what an explanation names."""
    if not seeds or items.size == 0:
        return np.full(items.size, -1)
    unit = model.unit_factors
    seed_idx = np.fromiter(seeds, dtype=np.int64)
    return seed_idx[np.argmax(unit[items] @ unit[seed_idx].T, axis=1)]


def reason(model: SnapshotModel, source: str, seed: int) -> str:
    """The one-line explanation of an item brought by ``source`` (naming ``seed`` for the session source)."""
    if source == "session" and seed >= 0:
        return f"because you viewed {model.item_ids[seed]}"
    return {
        "batch": "picked for you in the nightly run",
        "speed": "matches what you did recently",
        "session": "similar to your session",
        "trending": "trending now",
        "popular": "popular overall",
    }[source]
