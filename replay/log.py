"""The interaction log as replay needs it: every event in the batch window and the replay window, in event time.

The batch layer's reader (:func:`batch_layer.interactions.read_interactions`) does the parsing, so replay sees
exactly the rows the batch job sees. On top of it, replay adds

- ``session_id``, taken from a ``session_id`` column when the log has one (matched on user, item and time);
- ``novel``: the first time this user touches this item in the window. Only novel events are scored: a repeat
  is an item the user has already seen, which every variant filters out, so it can never be a hit;
- ``split``/``until`` bounds, in epoch milliseconds.

Example
-------
>>> log = load_log("var/log.parquet", BatchSettings(), split_at=split, until=None)   # doctest: +SKIP
>>> log.replay.height, log.scorable.sum()                                               # doctest: +SKIP
(20000, 17311)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from batch_layer.errors import BadInputError
from batch_layer.interactions import read_interactions
from batch_layer.parsing import discover, scan_file, scan_raw
from lambdarec.settings import BatchSettings

SESSION_COLUMN = "session_id"
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class ReplayLog:
    """Events of the batch window (``ts <= split_ms``) and of the replay window (``split_ms < ts <= until_ms``).

    ``frame`` has the batch reader's canonical columns plus ``session_id`` (null when unknown) and ``novel``,
    sorted by event time (ties keep the log's order).
    """

    frame: pl.DataFrame
    split_ms: int
    until_ms: int

    @property
    def replay(self) -> pl.DataFrame:
        """The events replayed one by one: after the split, up to ``until``."""
        return self.frame.filter(pl.col("ts") > self.split_ms)

    def before(self, start_ms: int) -> pl.DataFrame:
        """Events in ``(start_ms, split_ms]``: the tail of the batch window that warms up the speed state."""
        return self.frame.filter((pl.col("ts") > start_ms) & (pl.col("ts") <= self.split_ms))


def to_ms(t: datetime) -> int:
    """Epoch milliseconds of a datetime (naive means UTC)."""
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def load_log(
    source: str | Path, batch: BatchSettings, *, split_at: datetime, until: datetime | None = None
) -> ReplayLog:
    """Read ``source`` for a replay split at ``split_at``, up to ``until`` (default: the last event).

    Raises
    ------
    BadInputError
        The log cannot be read, or no event falls after ``split_at`` (nothing to replay) or before it.
    """
    split_ms = to_ms(split_at)
    as_of = until or datetime(9999, 1, 1, tzinfo=UTC)
    frame, _ = read_interactions(source, batch.model_copy(update={"lookback_days": None}), as_of=as_of)
    start_ms = None if batch.lookback_days is None else split_ms - int(batch.lookback_days * _DAY_MS)
    if start_ms is not None:
        frame = frame.filter(pl.col("ts") >= start_ms)
    if frame.filter(pl.col("ts") <= split_ms).height == 0:
        raise BadInputError(f"no event in {source} at or before the split {split_at.isoformat()}: nothing to train on")
    if frame.filter(pl.col("ts") > split_ms).height == 0:
        raise BadInputError(
            f"no event in {source} after the split {split_at.isoformat()}"
            + (f" and up to {until.isoformat()}" if until else "")
            + "; pick an earlier --split-at"
        )
    until_ms = to_ms(until) if until else int(frame["ts"].max())
    frame = frame.with_columns(
        _sessions(source, batch, frame), pl.struct("user_id", "item_id").is_first_distinct().alias("novel")
    )
    return ReplayLog(frame=frame, split_ms=split_ms, until_ms=until_ms)


def _sessions(source: str | Path, batch: BatchSettings, frame: pl.DataFrame) -> pl.Series:
    """The log's ``session_id`` per event, matched on (user, item, time); all null when the log has none."""
    files, root = discover(source)
    parts = []
    for index, path in enumerate(files):
        if SESSION_COLUMN not in scan_raw(path).collect_schema():
            continue
        raw = (
            scan_raw(path)
            .with_row_index("__row", offset=1)
            .select(pl.col("__row").cast(pl.Int64), pl.col(SESSION_COLUMN).cast(pl.String).alias("session_id"))
        )
        parsed = scan_file(path, index, root, batch).filter(pl.col("__reason").is_null())
        parts.append(parsed.join(raw, on="__row").select("user_id", "item_id", "ts", "session_id"))
    if not parts:
        return pl.Series("session_id", [None] * frame.height, dtype=pl.String)
    try:
        known = pl.concat(parts).unique(["user_id", "item_id", "ts"], keep="first", maintain_order=True).collect()
    except pl.exceptions.PolarsError as exc:
        raise BadInputError(f"cannot read the session_id column of {source}: {exc}") from exc
    joined = frame.select("user_id", "item_id", "ts").join(
        known, on=["user_id", "item_id", "ts"], how="left", maintain_order="left"
    )
    return joined["session_id"]


def sample_scored(novel_positions: np.ndarray, sample: int | None, seed: int) -> np.ndarray:
    """The positions (in the replay window) of the events to score: all novel ones, or a seeded sample of them.

    Example
    -------
    >>> sample_scored(np.arange(10), 3, seed=1).tolist() == sample_scored(np.arange(10), 3, seed=1).tolist()
    True
    """
    if sample is None or sample >= novel_positions.size:
        return novel_positions
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(novel_positions, size=sample, replace=False))
