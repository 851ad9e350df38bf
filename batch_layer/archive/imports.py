"""``lake import``: historical logs into the lake, once per file content.

A file is read as a public dataset when its name says which (``u.data``, ``ratings.dat``, ``*.inter``, ...;
see ``datasets import``), else as an interaction log (parquet or CSV with the ``batch.columns`` names). Its rows
get ``source = "import:<file name>"`` and no log position. The file's SHA-256 is recorded in the commit (an
application transaction), so importing the same content again appends nothing, even from two processes at once.
Rows the batch reader would refuse (no user, an unknown event type...) are counted and not imported.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from batch_layer.datasets import FORMATS, guess_format, import_dataset
from batch_layer.errors import BadInputError
from batch_layer.parsing import scan_file
from lambdarec.lake import EVENTS_SCHEMA, IMPORT_PREFIX, Lake
from lambdarec.settings import BatchSettings


@dataclass(frozen=True)
class ImportResult:
    """One file's import: rows appended (0 when its content was imported before), rows refused by reason."""

    file: str
    sha256: str
    appended: int
    already_imported: bool
    lake_version: int | None
    bad_rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _dataset_format(path: Path) -> str | None:
    try:
        fmt = guess_format(path)
    except BadInputError:
        return None
    return fmt if fmt in FORMATS else None


def import_file(lake: Lake, path: str | Path, batch: BatchSettings) -> ImportResult:
    """Append ``path`` to the lake unless a file with the same content was imported before.

    Raises
    ------
    BadInputError
        The file is missing or unreadable, or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"import file {path} does not exist")
    digest = file_sha256(path)
    if lake.imported(digest):
        return ImportResult(str(path), digest, 0, True, lake.version())
    rows, bad = _rows(path, digest, batch)
    result = lake.append_import(rows, digest, path.name)
    return ImportResult(
        str(path), digest, result.appended, result.appended == 0 and rows.num_rows > 0, result.version, bad
    )


def _rows(path: Path, digest: str, batch: BatchSettings) -> tuple[pa.Table, dict[str, int]]:
    fmt = _dataset_format(path)
    if fmt is not None:
        frame = import_dataset(fmt, path).with_columns(pl.col("timestamp").cast(pl.Int64) * 1000)
        frame = frame.rename({"timestamp": "ts"}).with_row_index("__row", offset=1)
        bad: dict[str, int] = {}
    else:
        raw = scan_file(path, 0, path.parent, batch).collect()
        reasons = raw.filter(pl.col("__reason").is_not_null()).group_by("__reason").len()
        bad = {str(k): int(v) for k, v in reasons.iter_rows()}
        frame = raw.filter(pl.col("__reason").is_null()).rename({"__weight": "weight"})
    now = pl.lit(int(time.time() * 1_000_000)).cast(pl.Datetime("us", "UTC"))
    ts = pl.col("ts").cast(pl.Datetime("ms", "UTC")).cast(pl.Datetime("us", "UTC"))
    out = frame.select(
        pl.coalesce(pl.col("event_id").cast(pl.String), pl.format(f"{digest[:16]}:{{}}", pl.col("__row"))).alias(
            "event_id"
        ),
        pl.col("user_id").cast(pl.String),
        pl.col("item_id").cast(pl.String),
        pl.col("event_type").cast(pl.String),
        ts.alias("timestamp"),
        pl.col("weight").cast(pl.Float64),
        pl.lit(None, pl.String).alias("session_id"),
        pl.lit(None, pl.String).alias("context"),
        pl.lit(1, pl.Int32).alias("schema"),
        pl.lit(None, pl.Int32).alias("log_partition"),
        pl.lit(None, pl.Int64).alias("log_offset"),
        now.alias("ingested_at"),
        pl.lit(f"{IMPORT_PREFIX}{path.name}").alias("source"),
        ts.dt.date().alias("event_date"),
        pl.lit(None, pl.List(pl.String)).alias("item_ids"),
    )
    return out.to_arrow().cast(EVENTS_SCHEMA), bad
