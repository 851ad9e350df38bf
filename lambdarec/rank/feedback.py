"""Negative feedback and impression fatigue as pure steps of the merge (see :mod:`lambdarec.rank.merge`).

- A **hidden** item is never recommended to that user again; a **disliked** one neither (until a later positive
  event on it takes the dislike back, :mod:`speed_layer.feedback`). Both join the merge's *seen* items, so no
  source (batch, speed, session, trending, popular) brings them back.
- The ``dislike_neighbours`` nearest neighbours of each disliked item are **demoted**: their score is multiplied
  by ``serving.dislike_neighbour_factor``.
- An item shown ``serving.fatigue.after`` times within ``serving.fatigue.window_s`` before the request (event
  time), with no positive event on it since, is **fatigued**: its score is multiplied by
  ``serving.fatigue.factor``. As the impressions age out of the window the demotion wears off.

A demotion by ``f`` maps a score ``s`` to ``s - (1 - f) |s|``: ``f s`` for a positive score, and further down for
a negative one, so a demoted item never overtakes the one it was behind. In explain mode the item's components
say which factor applied (``dislike``, ``fatigue``; 1 when none) and its reason names the disliked item or the
impression count.

Example
-------
>>> total, why = demote(model, fresh, items, total, DemoteSettings(), now_s=t)   # doctest: +SKIP
>>> why.dislike[3], why.disliked_by[3]                                          # doctest: +SKIP
(0.5, 'i7')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import FreshUser

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel
    from lambdarec.settings import ServingSettings


@dataclass(frozen=True)
class DemoteSettings:
    """``serving.dislike_neighbour_*`` and ``serving.fatigue.*``, read once (the merge runs per request)."""

    dislike_neighbour_factor: float = 0.5
    dislike_neighbours: int = 10
    fatigue_after: int = 5
    fatigue_window_s: float = 86400.0
    fatigue_factor: float = 0.5

    @classmethod
    def from_settings(cls, s: ServingSettings) -> DemoteSettings:
        f = s.fatigue
        return cls(s.dislike_neighbour_factor, s.dislike_neighbours, f.after, f.window_s, f.factor)


@dataclass(frozen=True)
class Demotions:
    """Per pooled item: the dislike and fatigue factors applied (1: none), the disliked item that demoted it
    (None: none) and its impressions in the window (0 when not fatigued)."""

    dislike: np.ndarray
    fatigue: np.ndarray
    disliked_by: list[str | None]
    impressions: np.ndarray

    def explained(self, j: int, reason: str | None, components: dict[str, float]) -> tuple[str, dict[str, float]]:
        """Pooled item ``j``'s explanation with what demoted it: the ``dislike`` and ``fatigue`` factors in its
        components, and the disliked item or the impression count in its reason."""
        parts = [reason] if reason else []
        if self.disliked_by[j] is not None:
            parts.append(f"demoted: similar to {self.disliked_by[j]}, which you disliked")
        if self.impressions[j]:
            parts.append(f"demoted: shown {int(self.impressions[j])} times without a click")
        return "; ".join(parts), {**components, "dislike": float(self.dislike[j]), "fatigue": float(self.fatigue[j])}


def demote(
    model: SnapshotModel,
    fresh: FreshUser | None,
    items: np.ndarray,
    total: np.ndarray,
    settings: DemoteSettings,
    *,
    now_s: float,
) -> tuple[np.ndarray, Demotions | None]:
    """``total`` (scores of the pooled ``items``) with the dislike and fatigue demotions applied, and what was
    applied; ``(total, None)`` unchanged when the user has no dislike and no impression."""
    if fresh is None or not (fresh.disliked or fresh.shown):
        return total, None
    n = items.size
    dislike = np.ones(n, dtype=np.float32)
    disliked_by: list[str | None] = [None] * n
    if fresh.disliked and settings.dislike_neighbours > 0 and settings.dislike_neighbour_factor < 1:
        where = {int(i): j for j, i in enumerate(items.tolist())}
        index = model.item_index
        # newest dislike first: an item near several disliked ones names the most recent
        for item in sorted(fresh.disliked, key=lambda i: (-fresh.disliked[i], i)):
            if (d := index.get(item)) is None:
                continue
            for nb in model.neighbours[d, : settings.dislike_neighbours].tolist():
                if nb >= 0 and (j := where.get(nb)) is not None and disliked_by[j] is None:
                    dislike[j], disliked_by[j] = settings.dislike_neighbour_factor, item
    fatigue = np.ones(n, dtype=np.float32)
    impressions = np.zeros(n, dtype=np.int32)
    if fresh.shown and settings.fatigue_factor < 1:
        counts = window_counts(fresh, now_s, settings.fatigue_window_s)
        index = model.item_index
        hits = [(index[item], c) for item, c in counts.items() if c >= settings.fatigue_after and item in index]
        if hits:
            where = {int(i): j for j, i in enumerate(items.tolist())}
            for i, c in hits:
                if (j := where.get(i)) is not None:
                    fatigue[j], impressions[j] = settings.fatigue_factor, c
    factor = dislike * fatigue
    if (factor == 1).all():
        return total, Demotions(dislike, fatigue, disliked_by, impressions)
    out = (total - (1.0 - factor) * np.abs(total)).astype(total.dtype, copy=False)
    return out, Demotions(dislike, fatigue, disliked_by, impressions)


def window_counts(fresh: FreshUser, now_s: float, window_s: float) -> dict[str, int]:
    """Per shown item, its impressions within ``window_s`` before ``now_s`` (event time; a little clock skew
    may put one after it, which counts)."""
    start = now_s - window_s
    return {item: c for item, times in fresh.shown.items() if (c := sum(t >= start for t in times))}
