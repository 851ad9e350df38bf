"""The embedded event log: one SQLite database (WAL) in the directory ``log.url`` names.

``sqlite:///var/events`` is the directory ``var/events`` relative to the working directory, ``sqlite:////srv/ev``
the absolute ``/srv/ev``; the database is ``events.sqlite3`` inside it. Several processes on one machine may
share it (the serving layer appending, a speed consumer reading).

Like a Kafka topic, the log has a fixed number of partitions (``log.partitions`` when it is first created); a
record goes to ``crc32(user_id) % partitions`` and gets the next position of that partition, counted from 0. See
``lambdarec.eventlog.sqlite_consumer`` for how a consumer group shares the partitions, and
``lambdarec.eventlog.sqlite_db`` for the tables.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence

from lambdarec.eventlog.base import (
    Consumer,
    DeadLetter,
    EventLog,
    EventLogUnavailableError,
    PartitionCallback,
    Record,
    keyed_values,
    partition_for,
)
from lambdarec.eventlog.sqlite_consumer import SQLiteConsumer
from lambdarec.eventlog.sqlite_db import (
    DB_FILE,
    DEAD_LETTER_SCHEMA,
    INSERT_RECORD,
    SCHEMA,
    UPDATE_NEXT,
    now_ms,
    quote_ident,
    sqlite_dir,
)
from lambdarec.events import Event
from lambdarec.logs import get_logger
from lambdarec.settings import LogSettings
from lambdarec.sqlite_txn import write_txn

log = get_logger(__name__)


class SQLiteEventLog(EventLog):
    """The ``EventLog`` port on an embedded SQLite database."""

    def __init__(self, settings: LogSettings):
        self.settings = settings
        self.directory = sqlite_dir(settings.url)
        self.dead_letter_table = quote_ident(settings.dead_letter)
        self._lock = threading.Lock()
        self._partitions: int | None = None
        self._conn = self.connect()
        with self._lock:  # CREATE ... IF NOT EXISTS: safe to repeat and to race
            index = quote_ident(settings.dead_letter + "_source")
            self._conn.executescript(
                SCHEMA + ";" + DEAD_LETTER_SCHEMA.format(table=self.dead_letter_table, index=index)
            )

    def connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode (transactions are explicit), WAL, waiting for locks."""
        path = self.directory / DB_FILE
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path,
                timeout=self.settings.request_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise EventLogUnavailableError(f"cannot open the SQLite event log at {path}: {exc}") from exc
        return conn

    # ---- partitions -----------------------------------------------------------------------------------------

    def ensure_topic(self, partitions: int | None = None) -> int:
        """Create the partitions (``partitions`` or ``log.partitions``) unless the log has them already."""
        want = partitions or self.settings.partitions
        if want < 1:
            raise ValueError(f"partitions must be >= 1; got {want}")
        with self._lock, write_txn(self._conn) as conn:
            have = conn.execute("SELECT COUNT(*) FROM partitions").fetchone()[0]
            if have == 0:
                conn.executemany("INSERT INTO partitions (part, next_pos) VALUES (?, 0)", [(p,) for p in range(want)])
                log.info("log.created", path=str(self.directory), partitions=want)
                have = want
        self._partitions = have
        return have

    def partition_count(self) -> int:
        """The log's partition count, creating the log with ``log.partitions`` if it has none yet."""
        if self._partitions is None:
            self.ensure_topic()
        assert self._partitions is not None
        return self._partitions

    def end_offsets(self) -> dict[int, int]:
        self.partition_count()
        with self._lock:
            return dict(self._conn.execute("SELECT part, next_pos FROM partitions ORDER BY part").fetchall())

    # ---- producing ------------------------------------------------------------------------------------------

    def append(self, events: Iterable[Event | bytes], keys: Iterable[str | None] | None = None) -> int:
        rows = list(keyed_values(events, keys))
        if not rows:
            return 0
        n = self.partition_count()
        stamp = now_ms()
        with self._lock, write_txn(self._conn) as conn:
            nxt = dict(conn.execute("SELECT part, next_pos FROM partitions").fetchall())
            batch = []
            for key, value in rows:
                p = partition_for(key, n)
                batch.append((p, nxt[p], key, value, stamp))
                nxt[p] += 1
            conn.executemany(INSERT_RECORD, batch)
            conn.executemany(UPDATE_NEXT, [(pos, p) for p, pos in nxt.items()])
        return len(rows)

    def dead_letter(self, raw: bytes, reason: str, source: tuple[int, int] | None = None) -> None:
        part, pos = source if source is not None else (None, None)
        with self._lock, write_txn(self._conn) as conn:
            conn.execute(
                f"INSERT INTO {self.dead_letter_table} (value, reason, source_part, source_pos, appended_ms) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?)",
                (bytes(raw), reason, part, pos, now_ms()),
            )
        log.warning("log.dead_letter", reason=reason, source=source, size=len(raw))

    def dead_letter_records(self, letters: Sequence[tuple[Record, str]]) -> int:
        if not letters:
            return 0
        table, stamp = self.dead_letter_table, now_ms()
        sql = (
            f"INSERT INTO {table} (value, reason, source_part, source_pos, appended_ms) "  # noqa: S608
            f"SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE source_part = ? AND source_pos = ?)"
        )
        with self._lock, write_txn(self._conn) as conn:  # the check and the insert in one transaction
            before = conn.total_changes
            conn.executemany(
                sql, ((r.value, reason, r.partition, r.offset, stamp, r.partition, r.offset) for r, reason in letters)
            )
            written = conn.total_changes - before
        for r, reason in letters:
            log.warning("log.dead_letter", reason=reason, source=(r.partition, r.offset), size=len(r.value))
        return written

    def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT value, reason, source_part, source_pos, appended_ms FROM {self.dead_letter_table} "  # noqa: S608
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadLetter(value=bytes(v), reason=r, source=(p, o) if p is not None else None, timestamp_ms=t)
            for v, r, p, o, t in reversed(rows)
        ]

    # ---- consuming ------------------------------------------------------------------------------------------

    def consumer(
        self,
        group: str | None = None,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ) -> Consumer:
        return SQLiteConsumer(self, group or self.settings.consumer_group, on_assign=on_assign, on_revoke=on_revoke)

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            with self._lock:
                self._conn.execute("SELECT COUNT(*) FROM partitions").fetchone()
        except sqlite3.Error as exc:
            raise EventLogUnavailableError(f"SQLite event log at {self.directory / DB_FILE}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
