"""The batch job's input: one pinned version of the lake, or interaction files.

``batch.source``: ``files`` reads ``--interactions`` / ``batch.interactions`` (:func:`read_interactions`);
``lake`` reads the master dataset at one table version (the latest when the job starts, or ``--lake-version``),
so a rerun with the same version reproduces the same snapshot; ``auto`` reads files when a path is given, else
the lake. From the lake, duplicate ``event_id`` values are dropped at read (a producer's retry), rows of erased
users are left out, and the manifest records ``lake_version`` and ``log_positions`` (per log partition, the next
offset the version covers): the speed layer's handoff keys on them.

Example
-------
>>> plan = plan_input(settings, interactions=None, lake_version=None)     # doctest: +SKIP
>>> frame, report, meta = read_input(plan, settings.batch, as_of=now)     # doctest: +SKIP
>>> meta
{'lake_version': 12, 'log_positions': {'0': 1200, '1': 1187}}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from batch_layer.errors import BadInputError, BadRowError
from batch_layer.interactions import ReadReport, cutoff_ms, read_interactions
from batch_layer.parsing import positive, type_weights
from lambdarec.catalog.events import ITEM_EVENT
from lambdarec.lake import Lake, LakeEmptyError, LakeError, open_lake
from lambdarec.lake.schema import SOURCE_IMPRESSIONS
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings, Settings

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class InputPlan:
    """What the job reads: files at ``path``, or the lake at ``lake_version`` (pinned when the job starts)."""

    kind: str  # "files" or "lake"
    path: str | None = None
    lake: Lake | None = None
    lake_version: int | None = None


def plan_input(settings: Settings, interactions: str | None, lake_version: int | None) -> InputPlan:
    """Decide the input and pin the lake version; ``BadInputError`` names what is missing."""
    batch = settings.batch
    path = interactions or batch.interactions
    if interactions or batch.source == "files" or (batch.source == "auto" and path):
        if lake_version is not None:
            raise BadInputError("--lake-version reads the lake; it cannot be combined with --interactions")
        if not path:
            raise BadInputError("no interaction log: pass --interactions PATH or set batch.interactions")
        return InputPlan("files", path=path)
    if settings.lake.url is None:
        raise BadInputError("no input: pass --interactions PATH, set batch.interactions, or set lake.url")
    lake = open_lake(settings)
    try:
        latest = lake.version()
    except LakeError as exc:
        raise BadInputError(str(exc)) from exc
    if latest is None:
        raise BadInputError(
            f"the lake at {lake.uri()} is empty: run `lambdarec archive run` or `lambdarec lake import FILE` first, "
            "or pass --interactions PATH"
        )
    if lake_version is not None and not 0 <= lake_version <= latest:
        raise BadInputError(f"--lake-version {lake_version} does not exist; the lake's versions are 0..{latest}")
    return InputPlan("lake", lake=lake, lake_version=latest if lake_version is None else lake_version)


def read_input(
    plan: InputPlan, batch: BatchSettings, *, as_of: datetime | None
) -> tuple[pl.DataFrame, ReadReport, dict[str, Any]]:
    """The clean frame, its read report, and the manifest fields that say what was read."""
    if plan.kind == "files":
        frame, report = read_interactions(plan.path, batch, as_of=as_of)
        return frame, report, {}
    assert plan.lake is not None and plan.lake_version is not None
    frame, report = read_lake(plan.lake, plan.lake_version, batch, as_of=as_of)
    positions = plan.lake.positions(plan.lake_version)
    return (
        frame,
        report,
        {
            "lake_version": plan.lake_version,
            "lake_url": plan.lake.uri(),
            "log_positions": {str(p): n for p, n in sorted(positions.items())},
        },
    )


def read_lake(
    lake: Lake, version: int, batch: BatchSettings, *, as_of: datetime | None
) -> tuple[pl.DataFrame, ReadReport]:
    """The lake at ``version`` as the canonical frame of :mod:`batch_layer.interactions` (same rules as files);
    without ``as_of`` the cut-off is the newest event that is not in the future, as for files."""
    keys, values = type_weights(batch)
    event_weight = (
        pl.when(pl.col("event_type").is_null())
        .then(pl.lit(1.0))
        .otherwise(pl.col("event_type").replace_strict(keys, values, default=None, return_dtype=pl.Float64))
    )
    erasures = lake.erasures()
    columns = [
        "event_id",
        "user_id",
        "item_id",
        "event_type",
        pl.col("timestamp").dt.epoch("ms").alias("ts"),
        "weight",
        event_weight.alias("__event_weight"),
    ]
    if erasures:  # only then are the positions and ingest times needed
        columns += erasure_columns()
    try:
        table = lake.table(version)
        raw = pl.scan_delta(table).filter(pl.col("event_type").ne_missing(ITEM_EVENT)).select(columns).collect()
    except LakeEmptyError as exc:
        raise BadInputError(str(exc)) from exc
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BadInputError(f"cannot read the lake at {lake.uri()} version {version}: {exc}") from exc

    erased_n = 0
    if erasures:
        erased = _erased_mask(raw, lake)
        erased_n = int(erased.sum())
        raw = raw.filter(~erased)
    unknown_n = raw["__event_weight"].null_count()
    if unknown_n and batch.on_bad_rows == "fail":
        row = raw.filter(pl.col("__event_weight").is_null()).row(0, named=True)
        raise BadRowError(
            f"lake {lake.uri()} version {version}: event {row['event_id']} has event_type {row['event_type']!r}, "
            f"not in batch.event_weights ({', '.join(keys)})",
            path=lake.uri(),
            row=0,
            reason="unknown_event_type",
        )
    good = raw.filter(pl.col("__event_weight").is_not_null()) if unknown_n else raw
    good = good.sort("ts", maintain_order=True)
    as_of_ms = cutoff_ms(as_of, good)
    start_ms = None if batch.lookback_days is None else as_of_ms - int(batch.lookback_days * _DAY_MS)
    first = pl.col("event_id").is_first_distinct()
    after = pl.col("ts") > as_of_ms
    before = pl.col("ts") < start_ms if start_ms is not None else pl.lit(False)
    flags = good.select(first.alias("first"), after.alias("after"), before.alias("before"))
    duplicates = flags.height - int(flags["first"].sum())
    deduped = flags["first"]
    after_n = int((flags["after"] & deduped).sum())
    before_n = int((flags["before"] & deduped).sum())
    trained = good.select(positive(batch)).to_series()
    keep = deduped & ~flags["after"] & ~flags["before"] & trained
    non_positive = int((deduped & ~flags["after"] & ~flags["before"] & ~trained).sum())
    distinct_ts = good["ts"].filter(deduped)
    span = (distinct_ts.min(), distinct_ts.max()) if distinct_ts.len() else (None, None)
    clean = good.filter(keep).select(
        "user_id",
        "item_id",
        "ts",
        (pl.col("__event_weight") * pl.col("weight").fill_null(1.0)).cast(pl.Float32).alias("weight"),
        "event_type",
    )
    bad = {"unknown_event_type": unknown_n} if unknown_n else {}
    if erased_n:
        bad["erased_user"] = erased_n
    report = ReadReport(
        source=f"{lake.uri()}@v{version}",
        files=len(table.file_uris()),
        rows_read=raw.height + erased_n,
        rows_kept=clean.height,
        duplicates_dropped=duplicates,
        after_as_of=int(after_n),
        before_window=int(before_n),
        as_of_ms=as_of_ms,
        window_start_ms=start_ms,
        fingerprint=hashlib.sha256(f"delta:{table.metadata().id}:{version}".encode()).hexdigest(),
        bad_rows=bad,
        first_ms=span[0],
        last_ms=span[1],
        non_positive=non_positive,
    )
    get_logger(__name__).info("lake.read", version=version, **report.to_dict())
    return clean, report


def erasure_columns() -> list[str | pl.Expr]:
    """The columns :func:`_erased_mask` judges a row by (a reader selects them beside its own, then drops them)."""
    return ["log_partition", "log_offset", pl.col("ingested_at").dt.epoch("ms").alias("ingested_ms"), "source"]


def _erased_mask(raw: pl.DataFrame, lake: Lake) -> pl.Series:
    """Rows of erased users that predate their erasure (a delete racing an archiver, or an older version)."""
    erasures = lake.erasures()
    if not erasures:
        return pl.Series([False] * raw.height, dtype=pl.Boolean)
    candidates = raw["user_id"].is_in(list(erasures))
    mask = [False] * raw.height
    hit = candidates.arg_true().to_list()
    if hit:
        cols = ("user_id", "log_partition", "log_offset", "ingested_ms", "source")
        users, parts, offsets, ingested, source = (raw[c] for c in cols)
        for n in hit:  # a position in the impressions log (log.impressions_topic) is judged by that log's end
            shown = source[n] == SOURCE_IMPRESSIONS
            mask[n] = erasures[users[n]].covers(parts[n], offsets[n], ingested[n] / 1000.0, shown)
    return pl.Series(mask, dtype=pl.Boolean)


def export_lake(lake: Lake, out: str, version: int | None = None) -> tuple[str, int]:
    """Write one pinned version of the lake (erased users left out) as an interaction-log parquet file.

    For readers of files (``lambdarec replay --interactions lake``): the file has the batch reader's columns, so
    every nightly the replay runs reads exactly that version. Returns (path, version).
    """
    latest = lake.version()
    if latest is None:
        raise BadInputError(f"the lake at {lake.uri()} is empty: nothing to replay")
    if version is not None and not 0 <= version <= latest:
        raise BadInputError(f"lake version {version} does not exist; the lake's versions are 0..{latest}")
    version = latest if version is None else version
    frame = (
        pl.scan_delta(lake.table(version))
        .select(
            "event_id",
            "user_id",
            "item_id",
            "event_type",
            "timestamp",
            "weight",
            "session_id",
            *erasure_columns(),
        )
        .collect()
    )
    frame = frame.filter(~_erased_mask(frame, lake)).drop("log_partition", "log_offset", "ingested_ms", "source")
    frame.sort("timestamp", maintain_order=True).write_parquet(out)
    return out, version
