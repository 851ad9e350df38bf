"""Read the interaction log into a clean frame (:mod:`batch_layer.matrix` aggregates it into a user x item matrix
and splits a holdout by time).

The clean frame has the canonical columns

=============  =========  ==========================================================================
column         dtype      meaning
=============  =========  ==========================================================================
``user_id``    Utf8       the user, as text (integer ids are written in decimal)
``item_id``    Utf8       the item, as text
``ts``         Int64      event time in **epoch milliseconds, UTC** (plain integers travel unchanged
                          through numpy, the store and the speed layer's events)
``weight``     Float32    ``batch.event_weights[event_type]`` x the explicit weight (1 when absent)
``event_type`` Utf8       the event type; null when the log has no event-type column
=============  =========  ==========================================================================

sorted by ``ts`` (ties keep input order). How raw values become these columns lives in
:mod:`batch_layer.parsing`.

Example
-------
>>> frame, report = read_interactions("var/interactions/", BatchSettings())  # doctest: +SKIP
>>> report.bad_rows
{'unknown_event_type': 3}
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from batch_layer.errors import BadInputError, BadRowError
from batch_layer.parsing import REASONS, describe_row, discover, positive, scan_file
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings

CANONICAL_SCHEMA = pl.Schema(
    {"user_id": pl.String, "item_id": pl.String, "ts": pl.Int64, "weight": pl.Float32, "event_type": pl.String}
)
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class ReadReport:
    """What :func:`read_interactions` read, kept and dropped, and why.

    Every row read is counted once:
    ``rows_read = rows_kept + bad_total + duplicates_dropped + outside_window + non_positive``.
    """

    source: str
    files: int
    rows_read: int
    rows_kept: int
    duplicates_dropped: int
    after_as_of: int
    before_window: int
    as_of_ms: int
    window_start_ms: int | None
    fingerprint: str
    bad_rows: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None  # event time span of the valid, distinct rows, inside the window or not
    last_ms: int | None = None
    non_positive: int = 0  # rows in the window of a `batch.non_positive_types` type: feedback, not trained on

    @property
    def outside_window(self) -> int:
        """Rows dropped for their time: later than ``as_of`` or older than the lookback window."""
        return self.after_as_of + self.before_window

    @property
    def bad_total(self) -> int:
        """Rows dropped as malformed, all reasons together."""
        return sum(self.bad_rows.values())

    def to_dict(self) -> dict[str, object]:
        """Plain data for logs and JSON output, including the derived totals."""
        return {**asdict(self), "outside_window": self.outside_window, "bad_total": self.bad_total}


def read_interactions(
    source: str | Path | None = None,
    batch: BatchSettings | None = None,
    *,
    as_of: datetime | None = None,
) -> tuple[pl.DataFrame, ReadReport]:
    """Read an interaction log (parquet or CSV: a file, a glob, or a hive-partitioned folder).

    Parameters
    ----------
    source
        The log; ``batch.interactions`` when None.
    batch
        Column names, event weights, lookback, timestamp unit and bad-row policy; defaults when None.
    as_of
        Data cut-off: later events are ignored, and the lookback window ends here. Naive datetimes are UTC.
        Defaults to the newest event time in the log that is not in the future (now, for an empty log), so a
        historical log such as MovieLens is read whole and a live one up to its last event.

    Returns
    -------
    (frame, report)
        The clean frame in the canonical columns (see the module docstring) and a :class:`ReadReport`.

    Raises
    ------
    BadInputError
        The source is missing or unreadable, or a file lacks a required column.
    BadRowError
        ``batch.on_bad_rows == "fail"`` and a row is malformed; names the file, row number and reason.
    """
    batch = batch or BatchSettings()
    source = source if source is not None else batch.interactions
    if source is None:
        raise BadInputError("no interaction log given: pass a path or set batch.interactions")
    files, root = discover(source)
    frames = [scan_file(path, index, root, batch) for index, path in enumerate(files)]
    try:
        raw = pl.concat(frames, how="vertical").collect()
    except pl.exceptions.PolarsError as exc:  # the first line: the rest is polars' query plan
        reason = str(exc).strip().split("\n", 1)[0][:300]
        raise BadInputError(f"cannot read interaction log {source}: {type(exc).__name__}: {reason}") from None

    bad = raw.filter(pl.col("__reason").is_not_null())
    if batch.on_bad_rows == "fail" and bad.height:
        first = bad.row(0, named=True)
        path, row, reason = str(files[first["__file"]]), first["__row"], first["__reason"]
        raise BadRowError(describe_row(path, row, reason, batch), path=path, row=row, reason=reason)
    counts = dict(bad.group_by("__reason").len().sort("__reason").iter_rows())

    good = raw.filter(pl.col("__reason").is_null())
    repeat = pl.col("event_id").is_not_null() & ~pl.col("event_id").is_first_distinct()
    duplicates = int(good.select(repeat.sum()).item())
    good = good.filter(~repeat)
    as_of_ms = cutoff_ms(as_of, good)
    start_ms = None if batch.lookback_days is None else as_of_ms - int(batch.lookback_days * _DAY_MS)
    after = pl.col("ts") > as_of_ms
    before = pl.col("ts") < start_ms if start_ms is not None else pl.lit(False)
    after_n, before_n, first_ms, last_ms = good.select(
        after.sum().alias("a"), before.sum().alias("b"), pl.col("ts").min().alias("f"), pl.col("ts").max().alias("l")
    ).row(0)
    non_positive_n = int(good.select((~after & ~before & ~positive(batch)).sum()).item())
    clean = (
        good.filter(~after & ~before & positive(batch))
        .select(
            "user_id",
            "item_id",
            "ts",
            (pl.col("__event_weight") * pl.col("__weight").fill_null(1.0)).cast(pl.Float32).alias("weight"),
            "event_type",
        )
        .sort("ts", maintain_order=True)
    )
    report = ReadReport(
        source=str(source),
        files=len(files),
        rows_read=raw.height,
        rows_kept=clean.height,
        duplicates_dropped=duplicates,
        after_as_of=int(after_n),
        before_window=int(before_n),
        as_of_ms=as_of_ms,
        window_start_ms=start_ms,
        fingerprint=fingerprint(files, root),
        bad_rows={str(k): int(v) for k, v in counts.items()},
        first_ms=None if first_ms is None else int(first_ms),
        last_ms=None if last_ms is None else int(last_ms),
        non_positive=non_positive_n,
    )
    # Looked up per call: a logger cached at import would keep writing to the stream of its first configuration.
    get_logger(__name__).info("interactions.read", **report.to_dict())
    return clean, report


def cutoff_ms(as_of: datetime | None, good: pl.DataFrame) -> int:
    """The cut-off in epoch ms: ``as_of``, or the newest event that is not in the future (now if none)."""
    if as_of is not None:
        return int((as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).timestamp() * 1000)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    newest = good.select(pl.col("ts").filter(pl.col("ts") <= now_ms).max()).item()
    return int(newest) if newest is not None else now_ms


def fingerprint(files: list[Path], root: Path) -> str:
    """SHA-256 over each file's path relative to ``root`` and its content's SHA-256.

    Content, not mtimes: a copy of the same log elsewhere gets the same fingerprint, so a rerun on copied
    inputs is recognised as the same input.
    """
    outer = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        outer.update(f"{path.relative_to(root).as_posix()}\0{digest}\n".encode())
    return outer.hexdigest()


def parse_time(text: str) -> datetime:
    """A time given on the command line: ISO-8601 (naive means UTC) or epoch seconds or milliseconds.

    Example
    -------
    >>> parse_time("2024-01-01").isoformat(), parse_time("1704067200000").isoformat()
    ('2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')
    """
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadInputError(
                f"time {text!r} is neither ISO-8601 (2024-01-31T12:00:00Z) nor epoch seconds/milliseconds"
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = number / 1000 if abs(number) >= 1e11 else number
    return datetime.fromtimestamp(seconds, UTC)


__all__ = [
    "CANONICAL_SCHEMA",
    "REASONS",
    "ReadReport",
    "fingerprint",
    "parse_time",
    "read_interactions",
]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def empty_window_message(report: ReadReport, batch: BatchSettings) -> str:
    """Why no interaction was left, in dates, with the flag and the setting that would keep some."""
    why = [f"{report.rows_read} rows read"]
    if report.before_window and report.window_start_ms is not None:
        why.append(
            f"{report.before_window} older than the window, which starts at {_iso(report.window_start_ms)} "
            f"(batch.lookback_days = {batch.lookback_days:g} before --as-of {_iso(report.as_of_ms)})"
        )
    if report.after_as_of:
        why.append(f"{report.after_as_of} later than --as-of {_iso(report.as_of_ms)}")
    if report.bad_total:
        why.append(f"{report.bad_total} malformed ({', '.join(f'{k}: {v}' for k, v in report.bad_rows.items())})")
    if report.duplicates_dropped:
        why.append(f"{report.duplicates_dropped} duplicates")
    text = f"no interactions left in {report.source} after filtering: {'; '.join(why)}."
    if report.first_ms is None or report.last_ms is None:
        return text
    last_s = -(-report.last_ms // 1000)  # rounded up: a cut-off that keeps the newest event
    days = max(report.as_of_ms - report.first_ms, 0) / 86_400_000
    return (
        f"{text} The log's events run from {_iso(report.first_ms)} to {_iso(report.last_ms)}: pass "
        f"--as-of {_iso(last_s * 1000)} (the log's end) and/or set batch.lookback_days "
        f"(LAMBDAREC_BATCH__LOOKBACK_DAYS) to at least {math.ceil(days)} to reach its start from this --as-of."
    )
