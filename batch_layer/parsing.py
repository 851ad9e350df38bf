"""Find the files of an interaction log and turn each file's raw columns into canonical, checked columns.

Every file is scanned on its own, lazily, with its own 1-based row number, and parsed according to its own
schema, so a folder may mix parquet and CSV, and integer and datetime timestamps. Each row gets a
``__reason``: null for a good row, else the first of :data:`REASONS` that it breaks.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from batch_layer.errors import BadInputError
from lambdarec.settings import BatchSettings

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv")

#: Why a row is bad, in the order rows are checked, with the sentence used in error messages.
REASONS: dict[str, str] = {
    "missing_user_id": "the user id is empty",
    "missing_item_id": "the item id is empty",
    "missing_timestamp": "the timestamp is empty",
    "unparsable_timestamp": "the timestamp is not a datetime, an epoch number or an ISO-8601 string",
    "timestamp_out_of_range": "the timestamp is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z",
    "non_numeric_weight": "the weight is not a finite number",
    "negative_weight": "the weight is negative (weights must be >= 0)",
    "unknown_event_type": "the event type is not a key of batch.event_weights",
}

# ISO-8601 shapes tried in turn for text timestamps; `%.f` accepts no fraction too.
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)
# Per-unit factor to epoch milliseconds, as (multiply, divide).
_UNIT = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a date-time holds


def type_weights(batch: BatchSettings) -> tuple[list[str], list[float]]:
    """Event types and their weights: ``batch.event_weights`` plus the non-positive types (weight 0), which are
    known (not bad rows) but left out of the matrix (:func:`positive`)."""
    weights = {t: 0.0 for t in batch.non_positive_types} | dict(batch.event_weights)
    return list(weights), list(weights.values())


def positive(batch: BatchSettings) -> pl.Expr:
    """True for rows the model trains on: an event type not in ``batch.non_positive_types`` (or none)."""
    return pl.col("event_type").is_null() | ~pl.col("event_type").is_in(batch.non_positive_types)


def discover(source: str | Path) -> tuple[list[Path], Path]:
    """The data files of ``source`` in a stable order, and the folder their relative names start from.

    Raises
    ------
    BadInputError
        Nothing exists at ``source``, a glob matches nothing, or a file is neither parquet nor CSV.
    """
    text = str(source)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise BadInputError(f"interaction log glob {text!r} matches no file")
        prefix = re.split(r"[*?[]", text, maxsplit=1)[0]
        root = Path(prefix) if prefix.endswith(("/", "\\")) else Path(prefix).parent
    else:
        path = Path(text)
        if path.is_dir():
            # Beside the data a folder may hold markers and sidecars (_SUCCESS, .crc, summary.json): skipped.
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")) and _is_data(p)
            )
            if not files:
                raise BadInputError(
                    f"interaction log folder {path} holds no data files (names ending in "
                    f"{', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)})"
                )
            root = path
        elif path.is_file():
            files, root = [path], path.parent
        else:
            raise BadInputError(
                f"interaction log {path} does not exist; expected a parquet or CSV file, a glob, or a folder"
            )
    for path in files:
        if not _is_data(path):
            raise BadInputError(
                f"interaction log file {path} is neither parquet nor CSV; expected a name ending in "
                f"{', '.join(PARQUET_SUFFIXES + CSV_SUFFIXES)}"
            )
    return files, root


def _is_data(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)


def scan_raw(path: Path) -> pl.LazyFrame:
    """A lazy scan of one file: parquet with its own types, CSV with every column as text."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return pl.scan_parquet(path)
    return pl.scan_csv(path, infer_schema=False, separator="\t" if name.endswith(".tsv") else ",")


def scan_file(path: Path, index: int, root: Path, batch: BatchSettings) -> pl.LazyFrame:
    """One file as canonical columns plus ``__file``, ``__row``, ``__weight``, ``__event_weight``, ``__reason``.

    Raises
    ------
    BadInputError
        The file cannot be read, or lacks a required column (named, with the columns it has).
    """
    try:
        lf = scan_raw(path)
        schema = lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadInputError(
            f"cannot read interaction log file {path}: {exc}; expected parquet, or CSV with a header row"
        ) from exc
    hive = _hive_values(path, root)
    extra = {k: v for k, v in hive.items() if k not in schema}
    lf = lf.with_row_index("__row", offset=1).with_columns(pl.lit(v, pl.String).alias(k) for k, v in extra.items())
    available = dict(schema) | dict.fromkeys(extra, pl.String)

    cols = batch.columns
    for key in ("user_id", "item_id", "timestamp"):
        name = getattr(cols, key)
        if name not in available:
            raise BadInputError(
                f"interaction log file {path} has no column {name!r} (batch.columns.{key}); "
                f"available columns: {', '.join(available)}. Rename the column or set batch.columns.{key}."
            )
    has_type, has_weight, has_id = (getattr(cols, k) in available for k in ("event_type", "weight", "event_id"))

    weight = _number(pl.col(cols.weight), available[cols.weight]) if has_weight else pl.lit(None, pl.Float64)
    weight_given = pl.col(cols.weight).is_not_null() if has_weight else pl.lit(False)
    event_type = pl.col(cols.event_type).cast(pl.String) if has_type else pl.lit(None, pl.String)
    keys, values = type_weights(batch)
    event_weight = (
        event_type.replace_strict(keys, values, default=None, return_dtype=pl.Float64) if has_type else pl.lit(1.0)
    )
    ts, ts_out_of_range = _epoch_ms(pl.col(cols.timestamp), available[cols.timestamp], batch.timestamp_unit, path)
    parsed = lf.select(
        pl.lit(index, pl.UInt32).alias("__file"),
        pl.col("__row").cast(pl.Int64),
        _text_id(pl.col(cols.user_id), available[cols.user_id]).alias("user_id"),
        _text_id(pl.col(cols.item_id), available[cols.item_id]).alias("item_id"),
        pl.col(cols.timestamp).is_null().alias("__ts_missing"),
        ts.alias("ts"),
        ts_out_of_range.alias("__ts_out_of_range"),
        weight.alias("__weight"),
        weight_given.alias("__weight_given"),
        event_type.alias("event_type"),
        event_weight.alias("__event_weight"),
        (pl.col(cols.event_id).cast(pl.String) if has_id else pl.lit(None, pl.String)).alias("event_id"),
    )
    blank = {c: pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in ("user_id", "item_id")}
    reason = (
        pl.when(blank["user_id"])
        .then(pl.lit("missing_user_id"))
        .when(blank["item_id"])
        .then(pl.lit("missing_item_id"))
        .when(pl.col("__ts_missing"))
        .then(pl.lit("missing_timestamp"))
        .when(pl.col("__ts_out_of_range"))
        .then(pl.lit("timestamp_out_of_range"))
        .when(pl.col("ts").is_null())
        .then(pl.lit("unparsable_timestamp"))
        .when(pl.col("__weight_given") & pl.col("__weight").is_null())
        .then(pl.lit("non_numeric_weight"))
        .when(pl.col("__weight") < 0)
        .then(pl.lit("negative_weight"))
        .when(pl.col("__event_weight").is_null())
        .then(pl.lit("unknown_event_type"))
        .otherwise(pl.lit(None, pl.String))
    )
    return parsed.with_columns(reason.alias("__reason")).drop("__ts_missing", "__ts_out_of_range", "__weight_given")


def describe_row(path: str, row: int, reason: str, batch: BatchSettings) -> str:
    """The message for a bad row: file, row (and CSV line), reason, and the row's raw values.

    A CSV's line is its row + 1 for the header; a quoted field holding a line break shifts later lines.
    """
    where = f"row {row}" if path.lower().endswith(PARQUET_SUFFIXES) else f"row {row} (line {row + 1})"
    detail = REASONS[reason]
    if reason == "unknown_event_type":
        detail += f" ({', '.join(sorted(batch.event_weights))})"
    try:
        values = scan_raw(Path(path)).slice(row - 1, 1).collect().row(0, named=True)
        shown = f"; the row is {values}"
    except (pl.exceptions.PolarsError, OSError, IndexError):
        shown = ""
    return (
        f"bad row in interaction log file {path}, {where}: {detail}{shown}. Fix the row, or set "
        f'batch.on_bad_rows = "skip" to count and drop bad rows.'
    )


def _hive_values(path: Path, root: Path) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in path.relative_to(root).parts[:-1]:
        key, sep, value = part.partition("=")
        if sep:
            values[key] = None if value == _HIVE_NULL else unquote(value)
    return values


def _text_id(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if dtype.is_float():  # 12.0 -> "12", as the id was before a NaN made the column float
        whole = col.is_finite() & (col == col.floor())
        return (
            pl.when(whole)
            .then(col.cast(pl.Int64, strict=False).cast(pl.String))
            .when(col.is_finite())
            .then(col.cast(pl.String))
        )
    return col.cast(pl.String)


def _number(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    value = col.str.strip_chars().cast(pl.Float64, strict=False) if dtype == pl.String else col.cast(pl.Float64)
    return pl.when(value.is_finite()).then(value)


def _epoch_ms(col: pl.Expr, dtype: pl.DataType, unit: str, path: Path) -> tuple[pl.Expr, pl.Expr]:
    """(epoch milliseconds, null when unreadable or out of range; whether a readable value is out of range).

    Numbers are scaled in float64 first to judge the range, so a huge value is a counted bad row instead of an
    integer overflow (wrapped silently) or a failed cast that would stop the whole job.
    """
    if isinstance(dtype, pl.Datetime):
        ms = col.dt.epoch("ms")
        return _in_range(ms.cast(pl.Float64), ms)
    if dtype == pl.Date:
        ms = col.cast(pl.Datetime("ms")).dt.epoch("ms")
        return _in_range(ms.cast(pl.Float64), ms)
    if dtype.is_integer():
        return _in_range(_scale(col.cast(pl.Float64), unit), _scale(col.cast(pl.Int64, strict=False), unit))
    if dtype.is_float():
        scaled = _scale(pl.when(col.is_finite()).then(col.cast(pl.Float64)), unit).floor()
        return _in_range(scaled, scaled)
    if dtype == pl.String:
        text = col.str.strip_chars()
        whole = text.cast(pl.Int64, strict=False)
        number = text.cast(pl.Float64, strict=False)
        finite = _scale(pl.when(number.is_finite()).then(number), unit).floor()
        dates = pl.coalesce(
            *(
                text.str.to_datetime(f, strict=False, time_zone="UTC", time_unit="ms").dt.epoch("ms")
                for f in _DATETIME_FORMATS
            )
        )
        approx = pl.coalesce(_scale(whole.cast(pl.Float64), unit), finite, dates.cast(pl.Float64))
        return _in_range(approx, pl.coalesce(_scale(whole, unit), finite, dates))
    raise BadInputError(
        f"interaction log file {path}: the timestamp column has type {dtype}; expected a datetime, "
        "integer or float epoch (s/ms/us/ns), or an ISO-8601 string"
    )


def _in_range(approx: pl.Expr, exact: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``exact`` as Int64 where ``approx`` (its float64 value) lies in 1970..9999, and the out-of-range flag."""
    inside = approx.is_between(0, _MAX_MS)
    return pl.when(inside).then(exact.cast(pl.Int64, strict=False)), approx.is_not_null() & ~inside


def _scale(value: pl.Expr, unit: str) -> pl.Expr:
    if unit != "auto":
        mul, div = _UNIT[unit]
        return value * mul // div
    size = value.abs()
    return (
        pl.when(size < 1e11)
        .then(value * 1000)
        .when(size < 1e14)
        .then(value)
        .when(size < 1e17)
        .then(value // 1000)
        .otherwise(value // 1_000_000)
    )
