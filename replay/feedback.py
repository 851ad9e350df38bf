"""Feedback events in a replay: the log's impressions, dislikes and hides, applied in event time between the
scored events (never scored themselves: they are not interactions), and the fatigue ablation they make possible.

When the replay window holds impressions, every ``lambda`` variant gets a twin without fatigue
(``lambda-no-fatigue``: ``serving.fatigue.factor`` 1), so the report shows what fatigue does to the same events.

Example
-------
>>> feed = FeedbackFeed(load_feedback("var/log.parquet", settings.batch, split_ms, until_ms))  # doctest: +SKIP
>>> online.apply(feed.until(row["ts"]))                                                        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from batch_layer.errors import BadInputError
from batch_layer.parsing import discover, scan_file, scan_raw
from lambdarec.events import FEEDBACK_TYPES, IMPRESSION, Event
from lambdarec.settings import BatchSettings
from replay.variants import Variant

ITEM_IDS = "item_ids"


def load_feedback(source: str | Path, batch: BatchSettings, start_ms: int, until_ms: int) -> pl.DataFrame:
    """The log's feedback events in ``(start_ms, until_ms]``, by event time: ``user_id``, ``item_id``, ``ts``,
    ``event_type`` and ``item_ids`` (an impression's shown items; ``[item_id]`` when the log has no list)."""
    files, root = discover(source)
    parts = []
    for index, path in enumerate(files):
        parsed = scan_file(path, index, root, batch).filter(
            pl.col("__reason").is_null()
            & pl.col("event_type").is_in(sorted(FEEDBACK_TYPES))
            & (pl.col("ts") > start_ms)
            & (pl.col("ts") <= until_ms)
        )
        if ITEM_IDS in scan_raw(path).collect_schema():
            raw = scan_raw(path).with_row_index("__row", offset=1).select(pl.col("__row").cast(pl.Int64), ITEM_IDS)
            parsed = parsed.join(raw, on="__row", how="left")
        else:
            parsed = parsed.with_columns(pl.lit(None, pl.List(pl.String)).alias(ITEM_IDS))
        parts.append(parsed.select("user_id", "item_id", "ts", "event_type", pl.col(ITEM_IDS).cast(pl.List(pl.String))))
    try:
        frame = pl.concat(parts).collect() if parts else pl.DataFrame()
    except pl.exceptions.PolarsError as exc:
        raise BadInputError(f"cannot read the feedback events of {source}: {exc}") from exc
    return frame.sort("ts", maintain_order=True) if frame.height else frame


class FeedbackFeed:
    """Feedback events handed out in event-time order, up to each replayed event's time."""

    def __init__(self, frame: pl.DataFrame):
        self._rows = frame.to_dicts() if frame.height else []
        self._next = 0
        self.impressions = sum(r["event_type"] == IMPRESSION for r in self._rows)

    def until(self, ts_ms: int) -> list[Event]:
        """The events at or before ``ts_ms`` not handed out yet."""
        out = []
        while self._next < len(self._rows) and self._rows[self._next]["ts"] <= ts_ms:
            r = self._rows[self._next]
            shown = tuple(dict.fromkeys(r[ITEM_IDS] or [r["item_id"]])) if r["event_type"] == IMPRESSION else ()
            out.append(Event(event_id=f"feedback-{self._next}", user_id=r["user_id"], item_id=r["item_id"],
                             event_type=r["event_type"], timestamp=r["ts"] / 1000.0, item_ids=shown))  # fmt: skip
            self._next += 1
        return out


def with_fatigue_ablation(variants: list[Variant], feed: FeedbackFeed) -> list[Variant]:
    """``variants`` with a ``lambda-no-fatigue`` twin after each ``lambda`` one, when the log has impressions."""
    if not feed.impressions:
        return variants
    out = []
    for v in variants:
        out.append(v)
        if v.kind == "lambda" and v.weights.demote.fatigue_factor < 1:
            off = replace(v.weights, demote=replace(v.weights.demote, fatigue_factor=1.0))
            out.append(replace(v, name=f"{v.name}-no-fatigue", weights=off))
    return out
