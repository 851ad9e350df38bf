"""The master dataset on Delta Lake (delta-rs): append exactly once, read a pinned version, erase a user.

Exactly once. Every commit of log events carries, as Delta *application transactions*, the log positions it
covers: app id ``log-p<partition>``, version = the next offset not yet archived. Before a commit the writer
drops the rows the table already covers, and Delta's conflict check refuses a commit when a concurrent one
recorded the same app id since the writer read the table; the writer then re-reads and retries. So a record
lands once whatever crashes, restarts or races between archivers happen: the table, not the consumer group's
committed offsets, is the truth. Imports use the same mechanism with app id ``import-<sha256 of the file>``.

Storage: a local directory or object storage (:mod:`lambdarec.lake.location`); the positions a commit records:
:mod:`lambdarec.lake.commits`; erased users: :mod:`lambdarec.lake.erasures`.

Example
-------
>>> lake = Lake(settings.lake)                                              # doctest: +SKIP
>>> lake.append_log(event_rows(batch, source="log", ingested_at=now), {0: 18, 1: 4})
AppendResult(version=7, appended=20, skipped=0, positions={0: 18, 1: 4})
>>> lake.scan(7).select(pl.len()).collect().item()
1234
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from lambdarec.lake.commits import AppendResult, app_id, covered_positions, not_covered
from lambdarec.lake.erasures import Ends, Erasure, Pos, erasure_rows, read_erasures, user_filter
from lambdarec.lake.errors import LakeEmptyError, LakeError
from lambdarec.lake.location import resolve_location
from lambdarec.lake.schema import (
    DEAD_LETTERS_SCHEMA,
    ERASURES_SCHEMA,
    EVENTS_SCHEMA,
    PARTITION_BY,
)
from lambdarec.lake.summary import table_summary
from lambdarec.logs import get_logger
from lambdarec.settings import LakeSettings

log = get_logger(__name__)

EVENTS, DEAD_LETTERS, ERASURES = "events", "dead_letters", "erasures"
_SCHEMAS = {
    EVENTS: (EVENTS_SCHEMA, PARTITION_BY),
    DEAD_LETTERS: (DEAD_LETTERS_SCHEMA, None),
    ERASURES: (ERASURES_SCHEMA, None),
}


class Lake:
    """The master dataset: the events table, its dead letters and the erasures, under ``lake.url``."""

    def __init__(self, settings: LakeSettings) -> None:
        if settings.url is None:
            raise LakeError("no lake: set lake.url (a directory, or s3://, gs://, az://)")
        self.settings = settings
        self.root, self.storage_options = resolve_location(settings.url, settings.storage_options)
        self._erasures_dt: DeltaTable | None = None
        self._latest: dict[str, DeltaTable] = {}  # handles brought up to date incrementally before each write
        self._erasures: tuple[int, dict[str, Erasure]] = (-1, {})

    # -- tables -------------------------------------------------------------------------------------------

    def uri(self, table: str = EVENTS) -> str:
        """Where ``table`` lives."""
        return f"{self.root.rstrip('/')}/{table}"

    def _open(self, table: str = EVENTS, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None
        except OSError as exc:
            raise LakeError(f"cannot read the lake table {self.uri(table)}: {exc}") from exc

    def _open_or_create(self, table: str) -> DeltaTable:
        """The latest version of ``table`` (created empty if absent); reads only the commits since the last call."""
        if (dt := self._latest_table(table)) is not None:
            return dt
        schema, partition_by = _SCHEMAS[table]
        try:
            dt = DeltaTable.create(
                self.uri(table),
                schema=schema,
                partition_by=partition_by,
                mode="ignore",
                storage_options=self.storage_options or None,
                name=f"lambdarec_{table}",
            )
        except CommitFailedError:  # another writer created it first
            dt = self._open(table)
            if dt is None:
                raise
        except (OSError, TableNotFoundError) as exc:  # delta-rs reports a directory it cannot create as not found
            raise LakeError(f"cannot create the lake table {self.uri(table)}: {exc}") from exc
        self._latest[table] = dt
        return dt

    def table(self, version: int | None = None) -> DeltaTable:
        """The events table at ``version`` (latest when None); ``LakeEmptyError`` when there is none."""
        dt = self._open(EVENTS, version)
        if dt is None:
            raise LakeEmptyError(
                f"the lake at {self.uri()} has no events table yet: run `lambdarec archive run` or "
                "`lambdarec lake import FILE`"
            )
        return dt

    def _latest_table(self, table: str) -> DeltaTable | None:
        """``table``'s latest version (a kept handle, brought up to date), None when it does not exist."""
        if (dt := self._latest.get(table)) is not None:
            dt.update_incremental()
            return dt
        dt = self._open(table)
        if dt is not None:
            self._latest[table] = dt
        return dt

    def version(self) -> int | None:
        """The events table's latest version, None when it does not exist yet."""
        dt = self._latest_table(EVENTS)
        return None if dt is None else dt.version()

    def positions(self, version: int | None = None, partitions: Iterable[int] | None = None, log: str = "log") -> Pos:
        """Per partition of ``log`` (``impressions``: the impressions log), the next offset not yet archived, as
        of ``version`` (latest when None)."""
        dt = self._latest_table(EVENTS) if version is None else self._open(EVENTS, version)
        return {} if dt is None else covered_positions(dt, partitions, log)

    # -- writes -------------------------------------------------------------------------------------------

    def append_log(self, rows: pa.Table, covers: Mapping[int, int], log: str = "log") -> AppendResult:
        """Append log events with the positions they cover, exactly once (see the module docstring).

        ``covers`` maps each partition in the batch to the next offset after it, including records that were
        not written as rows (dead letters, erased users): the commit records that they were handled. ``log``
        names the log the positions are in (``impressions``: the impressions log, positions of its own).
        """
        return self._append_once(EVENTS, rows, covers, log)

    def dead_letter(self, rows: pa.Table, covers: Mapping[int, int], log: str = "log") -> AppendResult:
        """Append dead letters, exactly once per log position (their own application transactions)."""
        return self._append_once(DEAD_LETTERS, rows, covers, log)

    def _append_once(self, table: str, rows: pa.Table, covers: Mapping[int, int], prefix: str) -> AppendResult:
        for attempt in range(self.settings.commit_retries):
            dt = self._open_or_create(table)
            done = covered_positions(dt, covers, prefix)
            ahead = {p: n for p, n in covers.items() if n > done.get(p, 0)}
            if not ahead:
                return AppendResult(dt.version(), 0, rows.num_rows, done)
            keep = not_covered(rows, done)
            fresh = rows.filter(keep) if rows.num_rows else rows
            txns = [Transaction(app_id(p, prefix), n, int(time.time() * 1000)) for p, n in sorted(ahead.items())]
            try:
                write_deltalake(
                    dt,
                    fresh,
                    mode="append",
                    schema_mode="merge",  # a table created before a column was added gains it
                    commit_properties=CommitProperties(
                        app_transactions=txns,
                        custom_metadata={"lambdarec": json.dumps({"covers": {str(p): n for p, n in ahead.items()}})},
                        max_commit_retries=0,
                    ),
                )
            except CommitFailedError as exc:  # a racing writer committed first: re-read its positions, retry
                log.info("lake.commit_retry", table=table, attempt=attempt + 1, reason=str(exc))
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            dt.update_incremental()
            return AppendResult(dt.version(), fresh.num_rows, rows.num_rows - fresh.num_rows, {**done, **ahead})
        raise LakeError(
            f"could not commit to {self.uri(table)} after {self.settings.commit_retries} attempts racing other writers"
        )

    def imported(self, digest: str) -> bool:
        """Whether a file with this content hash was imported already."""
        dt = self._open(EVENTS)
        return dt is not None and dt.transaction_version(f"import-{digest}") is not None

    def append_import(self, rows: pa.Table, digest: str, name: str) -> AppendResult:
        """Append imported history once per content hash (recorded in the commit's metadata)."""
        for attempt in range(self.settings.commit_retries):
            dt = self._open_or_create(EVENTS)
            if dt.transaction_version(f"import-{digest}") is not None:
                return AppendResult(dt.version(), 0, rows.num_rows)
            try:
                write_deltalake(
                    dt,
                    rows,
                    mode="append",
                    schema_mode="merge",  # a table created before a column was added gains it
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(f"import-{digest}", 1, int(time.time() * 1000))],
                        custom_metadata={"lambdarec": json.dumps({"import": name, "sha256": digest})},
                        max_commit_retries=0,
                    ),
                )
            except CommitFailedError:
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            dt.update_incremental()
            return AppendResult(dt.version(), rows.num_rows, 0)
        raise LakeError(f"could not commit the import of {name} after {self.settings.commit_retries} attempts")

    # -- reads --------------------------------------------------------------------------------------------

    def scan(self, version: int | None = None) -> pl.LazyFrame:
        """The events table at ``version`` as a lazy polars frame (nothing is read until collected)."""
        return pl.scan_delta(self.table(version))

    def dead_letters(self) -> pl.DataFrame:
        """Every dead letter kept in the lake."""
        dt = self._open(DEAD_LETTERS)
        return (
            pl.DataFrame(schema=pl.Schema(pl.from_arrow(DEAD_LETTERS_SCHEMA.empty_table()).schema))
            if dt is None
            else pl.scan_delta(dt).collect()
        )

    def summary(self, version: int | None = None) -> dict[str, Any]:
        """``lake show``: version, rows, users, items, first and last event time, positions."""
        return table_summary(self._open(EVENTS, version))

    # -- erasure ------------------------------------------------------------------------------------------

    def record_erasure(self, user_ids: Iterable[str], log_end: Mapping[int, int], shown_end: Ends = None) -> None:
        """Remember that ``user_ids`` were erased when the log (and the impressions log) ended at ``log_end``
        (``shown_end``): the archiver reads this."""
        rows = erasure_rows(user_ids, log_end, shown_end)
        dt = self._open_or_create(ERASURES)
        write_deltalake(
            dt, rows, mode="append", commit_properties=CommitProperties(max_commit_retries=self.settings.commit_retries)
        )

    def erasures(self) -> dict[str, Erasure]:
        """The erased users (the latest erasure of each); re-read only when the erasures table moved."""
        if self._erasures_dt is None:
            self._erasures_dt = self._open(ERASURES)
        else:
            self._erasures_dt.update_incremental()
        dt = self._erasures_dt
        if dt is None:
            return {}
        if self._erasures[0] == dt.version():
            return self._erasures[1]
        out = read_erasures(dt)
        self._erasures = (dt.version(), out)
        return out

    def delete_users(self, user_ids: Iterable[str]) -> tuple[int | None, int]:
        """Delete every row of ``user_ids`` (a Delta delete); returns (new version, rows deleted)."""
        users = sorted(set(user_ids))
        dt = self._open(EVENTS)
        if dt is None or not users:
            return (None if dt is None else dt.version()), 0
        for attempt in range(self.settings.commit_retries):
            try:
                metrics = dt.delete(user_filter(users), commit_properties=CommitProperties(max_commit_retries=0))
            except CommitFailedError:
                time.sleep(min(0.05 * 2**attempt, 1.0))
                dt = self.table()
                continue
            dt.update_incremental()
            return dt.version(), int(metrics.get("num_deleted_rows", 0))
        raise LakeError(f"could not delete users from {self.uri()} after {self.settings.commit_retries} attempts")

    # -- maintenance --------------------------------------------------------------------------------------

    def compact(self) -> dict[str, Any]:
        """Rewrite small files into files of about ``lake.target_file_mb``; returns delta-rs's metrics."""
        dt = self.table()
        return dict(dt.optimize.compact(target_size=self.settings.target_file_mb << 20))

    def vacuum(self, retain_hours: float, dry_run: bool = False) -> list[str]:
        """Remove files no version younger than ``retain_hours`` references; refused below the safety floor."""
        floor = self.settings.vacuum_min_retain_hours
        if retain_hours < floor:
            raise LakeError(
                f"--retain-hours {retain_hours:g} is below the safety floor lake.vacuum_min_retain_hours={floor:g}: "
                "a reader pinned to an older version (a running nightly, `--lake-version`) would lose its files. "
                "Lower the setting deliberately if you must (e.g. to complete an erasure)."
            )
        removed: list[str] = []
        for table in (EVENTS, DEAD_LETTERS, ERASURES):
            dt = self._open(table)
            if dt is not None:
                removed += dt.vacuum(
                    retention_hours=int(retain_hours), dry_run=dry_run, enforce_retention_duration=False
                )
        return removed
