"""Trending scores over the served snapshot's items, refreshed in the background (never per request); a refresh
that changed no score keeps the objects in hand (answers cached with them stay valid).

Counts decay in event time (architecture invariant 8): they are seen from the newest event time the speed
layer has applied (the largest ``as_of`` among the rows), not from the wall clock, so a replayed or delayed
stream ranks the same as a live one.

Example
-------
>>> scores = trending_for(store.read_trending(None), model, half_life_s=21600.0)     # doctest: +SKIP
>>> scores.shape == model.item_ids.shape
True
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from lambdarec.logs import get_logger
from lambdarec.model.fresh_items import with_fresh_items
from lambdarec.model.rows import TrendingItem
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.trending import TrendingScores, trending_scores
from lambdarec.store import OnlineStore
from serving_layer.store_gate import StoreGate, StoreUnavailable

log = get_logger(__name__)


def trending_for(rows: dict[str, TrendingItem], model: SnapshotModel, half_life_s: float) -> TrendingScores:
    """Decayed trending counts over ``model``'s items, seen from the newest count's event time, with their order
    computed here once rather than on every request."""
    watermark = max((t.as_of for t in rows.values()), default=0.0)
    return TrendingScores.of(trending_scores(rows, model, watermark, half_life_s))


class TrendingCache:
    """The latest trending rows, and their scores for each snapshot version being served."""

    def __init__(self, half_life_s: float, refresh_s: float, read_timeout_s: float):
        self.half_life_s = half_life_s
        self.refresh_s = refresh_s
        self.read_timeout_s = read_timeout_s
        self._rows: dict[str, TrendingItem] = {}
        # version -> (scores, the snapshot model with the brand-new items): the served one and perhaps the next
        self._scores: dict[str, tuple[TrendingScores, SnapshotModel]] = {}

    @property
    def rows(self) -> dict[str, TrendingItem]:
        """The trending rows last read (scored for other snapshots, e.g. an experiment arm's pinned one)."""
        return self._rows

    def scores_for(self, model: SnapshotModel) -> TrendingScores | None:
        """Scores over ``model``'s items, or None before the first read (the merge then skips trending)."""
        kept = self._scores.get(model.version)
        return kept[0] if kept is not None and kept[0].scores.size == len(model.item_ids) else None

    def model_for(self, model: SnapshotModel) -> SnapshotModel:
        """``model`` with the brand-new items of the last refresh appended (lambdarec.model.fresh_items)."""
        kept = self._scores.get(model.version)
        return (
            kept[1]
            if kept is not None and len(kept[1].item_ids) - kept[1].fresh_items == len(model.item_ids)
            else model
        )

    def prepare(self, model: SnapshotModel) -> None:
        """Score the rows in hand for ``model`` (called in the loading thread, before the model is swapped in)."""
        self._keep(model.version, *self._score(self._rows, model))

    def _score(self, rows: dict[str, TrendingItem], model: SnapshotModel) -> tuple[TrendingScores, SnapshotModel]:
        extended = with_fresh_items(rows.values(), model)
        return trending_for(rows, extended, self.half_life_s), extended

    async def refresh(self, store: OnlineStore, gate: StoreGate, model: SnapshotModel | None) -> None:
        """Re-read every trending row and re-score for ``model``; the previous scores stay on failure."""
        rows = await gate.call(store.read_trending, None, timeout_s=self.read_timeout_s, probe=True)
        self._rows = rows
        if model is not None:
            scores, extended = await asyncio.to_thread(self._score, rows, model)
            self._keep(model.version, scores, extended)

    def _keep(self, version: str, scores: TrendingScores, extended: SnapshotModel) -> None:
        kept = self._scores.get(version)
        if kept is None or kept[1] is not extended or not np.array_equal(kept[0].scores, scores.scores):
            kept = (scores, extended)  # else unchanged: the objects in hand stay, so do answers cached with them
        newest_last = {v: s for v, s in self._scores.items() if v != version} | {version: kept}
        self._scores = dict(list(newest_last.items())[-2:])  # the served version, and one being swapped in

    async def watch(
        self, store_of: Callable[[], OnlineStore], gate: StoreGate, model_of: Callable[[], SnapshotModel | None]
    ) -> None:
        """Refresh every ``refresh_s`` until cancelled; ``store_of()``/``model_of()`` give the current ones."""
        while True:
            try:
                await self.refresh(store_of(), gate, model_of())
            except StoreUnavailable:
                pass  # the gate logged it; the last scores keep serving
            except Exception:  # never let the loop die: trending is an input, not a dependency
                log.exception("serving.trending_refresh_failed")
            await asyncio.sleep(self.refresh_s)
