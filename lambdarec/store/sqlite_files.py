"""The SQLite store's connections: one per thread and file, following files restored under them, reporting deleted
ones.

A deleted file is noticed by its (device, inode), never by a failed read: an open connection keeps reading an
unlinked file (through its memory map or not), so a read that succeeds says nothing. Once noticed, every call fails
naming the file until it is back; a restored file (a new inode) makes every thread reconnect.

Example
-------
>>> files = Connections(Path("var/store"), StoreSettings())     # doctest: +SKIP
>>> with files.write("fresh") as conn:                           # doctest: +SKIP
...     conn.execute("DELETE FROM trending")
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from lambdarec.logs import get_logger
from lambdarec.settings import StoreSettings
from lambdarec.sqlite_txn import write_txn
from lambdarec.store.errors import StoreUnavailableError
from lambdarec.store.sqlite_schema import (
    CLAIM_EVENT_ID,
    CLAIM_SCOPES_SCHEMA,
    CLAIMS_FILE,
    CLAIMS_SCHEMA,
    ERASABLE,
    ERASED_USERS_SCHEMA,
    FRESH_FILE,
    FRESH_SCHEMA,
    PRAGMAS,
    SHOWN_FILE,
    SHOWN_SCHEMA,
    SNAPSHOT_SCHEMA,
    SNAPSHOTS_FILE,
)

log = get_logger(__name__)

Which = Literal["snapshots", "fresh", "shown", "claims"]
FILES: dict[Which, str] = {
    "snapshots": SNAPSHOTS_FILE,
    "fresh": FRESH_FILE,
    "shown": SHOWN_FILE,
    "claims": CLAIMS_FILE,
}
CHECK_EVERY_S = 0.25  # how often a store call also compares the files' identities (two stat calls)
CLAIMS_MOVED_PER_TXN = 10_000  # old claims copied per transaction when they move to claims.sqlite
MOVE_SHOWN_ROW = "INSERT OR IGNORE INTO shown_users (ns, user_id, data, expires_at) VALUES (?, ?, ?, ?)"
IN_BATCH = 500  # keys per `IN (...)` query; SQLite allows 32766 host parameters, small is plenty


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def select_in(conn: sqlite3.Connection, sql: str, lead: tuple[Any, ...], keys: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (with one ``IN ({})`` placeholder) for ``keys``, ``IN_BATCH`` keys a query."""
    for i in range(0, len(keys), IN_BATCH):
        batch = keys[i : i + IN_BATCH]
        yield from conn.execute(sql.format(",".join("?" * len(batch))), (*lead, *batch))


def add_erasure_column(conn: sqlite3.Connection, table: str, path: Path) -> None:
    """The ``erasure`` column (:mod:`lambdarec.store.erasure`) added to ``table`` where an older release created
    it (a schema change only: no row is rewritten); another process adding it first is fine."""
    if "erasure" in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
        return
    try:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN erasure BLOB")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise
    log.info("store.column_added", path=str(path), table=table, column="erasure")


class Connections:
    """The connections of one store directory; the constructor creates the files and tables if absent."""

    def __init__(self, path: Path, settings: StoreSettings):
        self.path = path
        self.settings = settings
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []  # (owner thread, its connection)
        self._all_lock = threading.Lock()
        self._closed = False
        self._generation = 0  # bumped when the files are replaced under the store: every thread reconnects
        self._identity: dict[str, tuple[int, int] | None] = {}  # file -> (device, inode) the connections opened
        self._checked_at = -float("inf")
        self._deleted: str | None = None  # the message while a file is missing
        self._creating = True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.db("snapshots").executescript(SNAPSHOT_SCHEMA)
            self.db("fresh").executescript(FRESH_SCHEMA)
            self.db("shown").executescript(SHOWN_SCHEMA)
            for which, table in ERASABLE:
                add_erasure_column(self.db(which), table, self.path)
            self._move_shown_rows()
            self.db("claims").executescript(CLAIMS_SCHEMA)
            self._move_claims()
            self._scope_claims()
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(f"cannot open the SQLite store in {self.path.resolve()}: {exc}") from exc
        finally:
            self._creating = False

    def _move_shown_rows(self) -> None:
        """Impressions rows an older release kept in fresh.sqlite, moved to shown.sqlite. A row shown.sqlite holds
        already was written later (this release never writes fresh.sqlite's) and is kept (``INSERT OR IGNORE``).
        fresh.sqlite's write transaction spans the read, the copy and the delete of exactly the keys read, so a row
        written meanwhile waits for it and stays; a crash before the delete moves the same rows again next time."""
        fresh = self.db("fresh")
        if fresh.execute("SELECT 1 FROM shown_users LIMIT 1").fetchone() is None:
            return
        with self.write("fresh") as source:
            rows = source.execute("SELECT ns, user_id, data, expires_at FROM shown_users").fetchall()
            with self.write("shown") as conn:
                before = conn.total_changes
                conn.executemany(MOVE_SHOWN_ROW, rows)
                moved = conn.total_changes - before
            source.executemany("DELETE FROM shown_users WHERE ns = ? AND user_id = ?", [r[:2] for r in rows])
        log.info("store.shown_rows_moved", path=str(self.path), to=SHOWN_FILE, moved=moved,
                 kept_newer=len(rows) - moved)  # fmt: skip

    def _move_claims(self) -> None:
        """Live event-id claims an older release kept in fresh.sqlite, moved to claims.sqlite, so an event resent
        across the upgrade is still recognised: ``CLAIMS_MOVED_PER_TXN`` at a time (bounded memory, fresh.sqlite's
        write lock held briefly), each chunk copied and committed first, then deleted by key (a crash between
        copies it again). A claim already in claims.sqlite is replaced only if it has expired (the claim upsert)."""
        fresh = self.db("fresh")
        if fresh.execute("SELECT 1 FROM event_ids LIMIT 1").fetchone() is None:
            return
        moved = 0
        while True:
            now = time.time()
            with self.write("fresh") as source:
                rows = source.execute(
                    "SELECT ns, event_id, part, pos, expires_at FROM event_ids LIMIT ?", (CLAIMS_MOVED_PER_TXN,)
                ).fetchall()
                if not rows:
                    break
                live = [(*r, now) for r in rows if r[4] > now]
                with self.write("claims") as conn:
                    conn.executemany(CLAIM_EVENT_ID, live)
                source.executemany("DELETE FROM event_ids WHERE ns = ? AND event_id = ?", [r[:2] for r in rows])
            moved += len(live)
        log.info("store.claims_moved", path=str(self.path), to=CLAIMS_FILE, moved=moved)

    def _scope_claims(self) -> None:
        """Note, the first time this release opens the store, until when an older release's claims may still be
        live (``claim_scopes``, see its schema). Read first; claims.sqlite's write lock only while it is missing."""
        has = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'claim_scopes'"
        if self.db("claims").execute(has).fetchone():
            return
        with self.write("claims") as conn:
            if conn.execute(has).fetchone():
                return
            conn.execute(CLAIM_SCOPES_SCHEMA)
            now = time.time()
            (until,) = conn.execute("SELECT MAX(expires_at) FROM event_ids WHERE expires_at > ?", (now,)).fetchone()
            conn.execute("INSERT INTO claim_scopes (id, legacy_until) VALUES (0, ?)", (until or 0.0,))
        if until:
            log.info("store.impression_claims_scoped", path=str(self.path), legacy_claims_until=until)

    def db(self, which: Which) -> sqlite3.Connection:
        """This thread's connection to ``which`` file; ``StoreUnavailableError`` once the store is closed or while a
        file is deleted (checked every ``CHECK_EVERY_S``, at every new connection, and on every call meanwhile)."""
        if self._closed:
            raise StoreUnavailableError(f"the SQLite store in {self.path.resolve()} was closed")
        held = getattr(self._local, which, None)
        due = held is None or self._deleted is not None or time.monotonic() - self._checked_at >= CHECK_EVERY_S
        if due and not self._creating:
            self.check_files()
        if held is not None and held[0] == self._generation:
            return held[1]
        if held is not None:  # the files were replaced (a restore): this thread's old connection reads the old ones
            with self._all_lock:
                self._all = [entry for entry in self._all if entry[1] is not held[1]]
            with contextlib.suppress(sqlite3.Error):
                held[1].close()
        return self._connect(which)

    def _connect(self, which: Which) -> sqlite3.Connection:
        name = FILES[which]
        generation, path = self._generation, self.path / name
        # mode=rw after the constructor: a deleted file must stay missing (and be reported), not come back empty.
        uri = path.resolve().as_uri() + ("?mode=rwc" if self._creating else "?mode=rw")
        # Autocommit (transactions are explicit); check_same_thread=False only so close() reaches all threads.
        conn = sqlite3.connect(uri, self.settings.request_timeout_s, isolation_level=None, check_same_thread=False,
                               uri=True)  # fmt: skip
        conn.executescript(PRAGMAS)
        if which == "shown" and not self._creating:  # restored from before its claims tables: create them (no lock
            conn.executescript(SHOWN_SCHEMA)  # when they exist, as IF NOT EXISTS compiles to nothing then)
        if not self._creating:  # restored from before the erasure column: add it (a read when it is there)
            for table in (t for w, t in ERASABLE if w == which):
                add_erasure_column(conn, table, self.path)
            if which == "fresh":  # and the erased users' table (no lock when it exists)
                conn.executescript(ERASED_USERS_SCHEMA)
        mmap_mb = self.settings.sqlite.mmap_mb if which == "snapshots" else self.settings.sqlite.fresh_mmap_mb
        conn.execute(f"PRAGMA mmap_size={int(mmap_mb) << 20}")  # an int from the settings
        setattr(self._local, which, (generation, conn))
        with self._all_lock:
            self._all.append((threading.current_thread(), conn))
            self._identity.setdefault(name, file_identity(path))
        return conn

    def check_files(self) -> None:
        """Raise ``StoreUnavailableError`` if a database file was deleted; reopen every thread's connections if
        one was replaced (restored from a backup), so the store follows the new files without a restart."""
        self._checked_at = time.monotonic()
        replaced = None
        for name in FILES.values():
            now = file_identity(self.path / name)
            if now is None:
                self._deleted = (
                    f"{name} was deleted from {self.path.resolve()} while the store had it open; restore the "
                    "store's files (the store reopens them by itself)"
                )
                raise StoreUnavailableError(self._deleted)
            known = self._identity.get(name)
            replaced = replaced or (name if known is not None and known != now else None)
        self._deleted = None
        if replaced:
            with self._all_lock:
                self._generation += 1
                self._identity.clear()
            log.warning("store.files_replaced", path=str(self.path), file=replaced, effect="connections reopened")

    def write(self, which: Which = "snapshots") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction on this thread's connection to ``which``, taken up front (``write_txn``)."""
        return write_txn(self.db(which))

    def close(self) -> None:
        """Close the connections of this thread and of threads that have ended; drop the others.

        Another thread may be inside a query on its connection right now (a request or a watcher still finishing
        as the server stops), and closing a connection under a running statement crashes the process. Dropping
        the references instead closes each of those connections the moment its thread lets go of it. Every call
        after ``close`` raises ``StoreUnavailableError``.
        """
        self._closed = True
        with self._all_lock:
            held, self._all = self._all, []
        self._local = threading.local()
        me = threading.current_thread()
        for owner, conn in held:
            if owner is me or not owner.is_alive():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
