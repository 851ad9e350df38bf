"""The embedded ``OnlineStore``: SQLite in WAL mode, in one directory, stdlib only.

Two database files keep the batch layer's large write transactions from delaying the speed layer's small ones:
``snapshots.sqlite`` (snapshot metadata, the current pointer, rows, arrays, locks) and ``fresh.sqlite`` (the
speed layer's state). Rows are keyed ``(version, key)`` in WITHOUT ROWID tables, so a serving read is one b-tree
lookup. Each thread gets its own connections; ``publish`` flips the pointer in one transaction.

Example
-------
>>> store = SQLiteStore(StoreSettings(url="sqlite:///var/store"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from lambdarec.logs import get_logger
from lambdarec.masking import mask_url
from lambdarec.settings import StoreSettings
from lambdarec.store import base, codec
from lambdarec.store.base import FreshUser, ItemRow, OnlineStore, SnapshotInfo, TrendingItem, UserRow

log = get_logger(__name__)

SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (version TEXT PRIMARY KEY, ns TEXT NOT NULL, state TEXT NOT NULL,
  created_at REAL NOT NULL, published_at REAL, meta TEXT NOT NULL, manifest TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_ns ON snapshots (ns, created_at);
CREATE TABLE IF NOT EXISTS pointer (ns TEXT PRIMARY KEY, version TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (version TEXT, user_id TEXT, data BLOB NOT NULL,
  PRIMARY KEY (version, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (version TEXT, item INTEGER, data BLOB NOT NULL,
  PRIMARY KEY (version, item)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arrays (version TEXT, name TEXT, chunks INTEGER NOT NULL, nbytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL, PRIMARY KEY (version, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS array_chunks (version TEXT, name TEXT, chunk INTEGER, data BLOB NOT NULL,
  PRIMARY KEY (version, name, chunk));
CREATE TABLE IF NOT EXISTS locks (ns TEXT, name TEXT, owner TEXT NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, name)) WITHOUT ROWID;
"""
# trending.item_id holds TrendingItem.key: the item id, or item_id@partition for a per-partition shard.
FRESH_SCHEMA = """
CREATE TABLE IF NOT EXISTS fresh_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trending (ns TEXT, item_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, item_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_ids (ns TEXT, event_id TEXT, part INTEGER NOT NULL, pos INTEGER NOT NULL,
  expires_at REAL NOT NULL, PRIMARY KEY (ns, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_ids_expiry ON event_ids (ns, expires_at);
"""
# A claim is taken unless a live one holds the id; an expired one is taken over in place.
CLAIM_EVENT_ID = (
    "INSERT INTO event_ids (ns, event_id, part, pos, expires_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (ns, event_id) DO UPDATE SET part = excluded.part, pos = excluded.pos, "
    "expires_at = excluded.expires_at WHERE event_ids.expires_at <= ?"
)
SELECT_EVENT_IDS = "SELECT event_id, part, pos FROM event_ids WHERE ns = ? AND event_id IN ({})"
RELEASE_EVENT_ID = "DELETE FROM event_ids WHERE ns = ? AND event_id = ? AND part = ? AND pos = ?"
DROP_EXPIRED_EVENT_IDS = "DELETE FROM event_ids WHERE ns = ? AND expires_at <= ?"
_EVENT_ID_SWEEP_S = 60.0  # how often claiming also deletes expired claims
SNAPSHOTS_FILE, FRESH_FILE = "snapshots.sqlite", "fresh.sqlite"
# 16 KiB pages keep a 2 KiB user row inside its b-tree page (4 KiB pages spill it to overflow pages: half the
# write rate, twice the file); page_size only takes effect on a new file. A 64 MiB WAL between checkpoints
# (4000 pages) spares a bulk write most checkpoint fsyncs. The memory map (store.sqlite.mmap_mb,
# store.sqlite.fresh_mmap_mb) is set per connection by `_db`.
_PRAGMAS = "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=4000;"
_INFO = "SELECT version, state, created_at, published_at, meta, manifest FROM snapshots WHERE ns = ?"
_IN_BATCH = 500  # keys per `IN (...)` query; SQLite allows 32766 host parameters, small is plenty


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def store_dir(url: str) -> Path:
    """The directory a ``sqlite:///relative/dir`` or ``sqlite:////absolute/dir`` URL names."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or len(parts.path) < 2:
        raise ValueError(f"store URL {mask_url(url)!r}: expected sqlite:///relative/dir or sqlite:////absolute/dir")
    return Path(parts.path[1:])


def missing_files(url: str) -> list[Path]:
    """The database files of the store at ``url`` that do not exist (all of them when the directory is absent)."""
    path = store_dir(url)
    return [path / name for name in (SNAPSHOTS_FILE, FRESH_FILE) if not (path / name).is_file()]


class SQLiteStore(OnlineStore):
    """``OnlineStore`` on SQLite files in the directory named by ``settings.url``."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self.path = store_dir(settings.url)
        self._ns = settings.namespace
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []  # (owner thread, its connection)
        self._all_lock = threading.Lock()
        self._closed = False
        self._generation = 0  # bumped when the files are replaced under the store: every thread reconnects
        self._identity: dict[str, tuple[int, int] | None] = {}  # file -> (device, inode) the connections opened
        self._current = base.CurrentPointer(self._read_pointer, settings.current_cache_s)
        self._creating = True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db("snapshots").executescript(SNAPSHOT_SCHEMA)
            self._db("fresh").executescript(FRESH_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise base.StoreUnavailableError(f"cannot open the SQLite store in {self.path.resolve()}: {exc}") from exc
        finally:
            self._creating = False
        log.debug("store.opened", backend="sqlite", path=str(self.path), namespace=self._ns)

    # ---- connections ----------------------------------------------------------------------------------------

    def _db(self, which: str) -> sqlite3.Connection:
        if self._closed:
            raise base.StoreUnavailableError(f"the SQLite store in {self.path.resolve()} was closed")
        held = getattr(self._local, which, None)
        if held is not None and held[0] == self._generation:
            return held[1]
        if held is not None:  # the files were replaced (a restore): this thread's old connection reads the old ones
            with self._all_lock:
                self._all = [entry for entry in self._all if entry[1] is not held[1]]
            with contextlib.suppress(sqlite3.Error):
                held[1].close()
        name = SNAPSHOTS_FILE if which == "snapshots" else FRESH_FILE
        generation, path = self._generation, self.path / name
        # mode=rw after the constructor: a deleted file must stay missing (and be reported), not come back empty.
        uri = path.resolve().as_uri() + ("?mode=rwc" if self._creating else "?mode=rw")
        # Autocommit (transactions are explicit); check_same_thread=False only so close() reaches all threads.
        conn = sqlite3.connect(uri, self.settings.request_timeout_s, isolation_level=None, check_same_thread=False,
                               uri=True)  # fmt: skip
        conn.executescript(_PRAGMAS)
        mmap_mb = self.settings.sqlite.mmap_mb if which == "snapshots" else self.settings.sqlite.fresh_mmap_mb
        conn.execute(f"PRAGMA mmap_size={int(mmap_mb) << 20}")  # an int from the settings
        setattr(self._local, which, (generation, conn))
        with self._all_lock:
            self._all.append((threading.current_thread(), conn))
            self._identity.setdefault(name, _identity(path))
        return conn

    def _check_files(self) -> None:
        """Raise ``StoreUnavailableError`` if a database file was deleted; reopen every thread's connections if
        one was replaced (restored from a backup), so the store follows the new files without a restart."""
        for name in (SNAPSHOTS_FILE, FRESH_FILE):
            path = self.path / name
            now = _identity(path)
            if now is None:
                raise base.StoreUnavailableError(
                    f"{name} was deleted from {self.path.resolve()} while the store had it open; restore the "
                    "store's files (the store reopens them by itself)"
                )
            known = self._identity.get(name)
            if known is not None and known != now:
                with self._all_lock:
                    self._generation += 1
                    self._identity.clear()
                log.warning("store.files_replaced", path=str(self.path), file=name, effect="connections reopened")
                return

    @contextlib.contextmanager
    def _write(self, which: str = "snapshots") -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so two writers never deadlock on an upgrade."""
        conn = self._db(which)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _state(self, conn: sqlite3.Connection, version: str) -> Any:
        row = conn.execute("SELECT state FROM snapshots WHERE version = ? AND ns = ?", (version, self._ns)).fetchone()
        return row[0] if row else None

    # ---- snapshot lifecycle -----------------------------------------------------------------------------------

    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        version = base.new_version()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO snapshots (version, ns, state, created_at, meta) VALUES (?, ?, 'writing', ?, ?)",
                (version, self._ns, time.time(), base.meta_json(meta, "meta")),
            )
        log.info("snapshot.begun", version=version, backend="sqlite")
        return version

    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        data = codec.array_to_bytes(np.asarray(array))
        pieces = codec.chunk(data)
        with self._write() as conn:
            base.require_writing(version, self._state(conn, version))
            conn.execute("DELETE FROM array_chunks WHERE version = ? AND name = ?", (version, name))
            chunks = ((version, name, i, piece) for i, piece in enumerate(pieces))
            conn.executemany("INSERT INTO array_chunks VALUES (?, ?, ?, ?)", chunks)
            index = (version, name, len(pieces), len(data), codec.checksum(data))
            conn.execute("INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?)", index)

    # Rows are keyed (version, user_id): a retried part overwrites itself, so COUNT(*) stays exact without tallies.
    def write_users(self, version: str, rows: Iterable[UserRow], part: str | None = None) -> int:
        encoded = ((version, r.user_id, codec.encode_user(r)) for r in rows)
        return self._write_rows(version, "INSERT OR REPLACE INTO users VALUES (?, ?, ?)", encoded)

    def write_items(self, version: str, rows: Iterable[ItemRow], part: str | None = None) -> int:
        encoded = ((version, int(r.item), codec.encode_item(r)) for r in rows)
        return self._write_rows(version, "INSERT OR REPLACE INTO items VALUES (?, ?, ?)", encoded)

    def _write_rows(self, version: str, sql: str, encoded: Iterator[tuple[Any, ...]]) -> int:
        with self._write() as conn:
            base.require_writing(version, self._state(conn, version))
            before = conn.total_changes
            conn.executemany(sql, encoded)
            return conn.total_changes - before

    def validate(self, version: str, expected_users: int, expected_items: int) -> list[str]:
        conn = self._db("snapshots")
        self.get_snapshot(version)  # SnapshotNotFoundError names an unknown version
        problems = []
        for table, expected in (("users", expected_users), ("items", expected_items)):
            (stored,) = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE version = ?", (version,)).fetchone()  # noqa: S608
            if stored != expected:
                problems.append(f"{table[:-1]} rows: {stored} stored, the manifest expects {expected}")
        return problems + base.array_problems(self, version)

    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        manifest_text = base.meta_json(manifest, "manifest")
        users, items = base.check_publishable(self, version, manifest)
        with self._write() as conn:
            base.require_writing(version, self._state(conn, version))
            conn.execute(
                "UPDATE snapshots SET state = 'published', published_at = ?, manifest = ? WHERE version = ?",
                (time.time(), manifest_text, version),
            )
            conn.execute("INSERT OR REPLACE INTO pointer (ns, version) VALUES (?, ?)", (self._ns, version))
        self._current.set(version)
        log.info("snapshot.published", version=version, users=users, items=items, backend="sqlite")

    def list_snapshots(self) -> list[SnapshotInfo]:
        rows = self._db("snapshots").execute(_INFO + " ORDER BY created_at DESC, version DESC", (self._ns,))
        current = self.current_version(max_age_s=0)
        return [base.stored_info(row, current) for row in rows.fetchall()]

    def get_snapshot(self, version: str) -> SnapshotInfo:
        row = self._db("snapshots").execute(_INFO + " AND version = ?", (self._ns, version)).fetchone()
        if row is None:
            raise base.SnapshotNotFoundError(f"no snapshot has version {version!r} in namespace {self._ns!r}")
        return base.stored_info(row, self.current_version(max_age_s=0))

    def activate(self, version: str) -> None:
        base.check_activatable(self, self.get_snapshot(version))
        with self._write() as conn:
            if self._state(conn, version) != "published":  # pruned meanwhile
                base.require_activatable(self.get_snapshot(version))
            conn.execute("INSERT OR REPLACE INTO pointer (ns, version) VALUES (?, ?)", (self._ns, version))
        self._current.set(version)
        log.info("snapshot.activated", version=version, backend="sqlite")

    def prune(self, keep: int) -> list[str]:
        plan = base.prune_plan(self.list_snapshots(), keep, datetime.now(UTC), self.settings.abandon_after_s)
        for version in plan:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM pointer WHERE version = ?", (version,)).fetchone():
                    continue  # activated meanwhile
                conn.execute("UPDATE snapshots SET state = 'retired' WHERE version = ?", (version,))
                for table in ("users", "items", "arrays", "array_chunks"):
                    conn.execute(f"DELETE FROM {table} WHERE version = ?", (version,))  # noqa: S608
        with self._write("fresh") as conn:  # expired fresh state is invisible already; reclaim its space here
            for table in ("fresh_users", "trending"):
                conn.execute(f"DELETE FROM {table} WHERE ns = ? AND expires_at <= ?", (self._ns, time.time()))  # noqa: S608
        log.info("snapshots.pruned", retired=plan, keep=keep, backend="sqlite")
        return plan

    def current_version(self, max_age_s: float | None = None) -> str | None:
        return self._current.get(max_age_s)

    def _read_pointer(self) -> str | None:
        self._check_files()  # a poll of the pointer is also the moment to notice deleted or restored files
        row = self._db("snapshots").execute("SELECT version FROM pointer WHERE ns = ?", (self._ns,)).fetchone()
        return row[0] if row else None

    # ---- snapshot reads -------------------------------------------------------------------------------------

    def read_array(self, version: str, name: str) -> np.ndarray:
        conn, key = self._db("snapshots"), (version, name)
        row = conn.execute("SELECT chunks, sha256 FROM arrays WHERE version = ? AND name = ?", key).fetchone()
        if row is None:
            raise KeyError(f"snapshot {version} has no array {name!r}; it has {self.array_names(version)}")
        pieces = conn.execute("SELECT data FROM array_chunks WHERE version = ? AND name = ? ORDER BY chunk", key)
        return codec.join_array(version, name, [p[0] for p in pieces], row[0], row[1])

    def array_names(self, version: str) -> list[str]:
        rows = self._db("snapshots").execute("SELECT name FROM arrays WHERE version = ? ORDER BY name", (version,))
        return [r[0] for r in rows]

    def read_users(self, version: str, user_ids: Iterable[str]) -> dict[str, UserRow]:
        sql = "SELECT user_id, data FROM users WHERE version = ? AND user_id IN ({})"
        return codec.decode_users(version, self._select_in(self._db("snapshots"), sql, (version,), list(user_ids)))

    def read_user(self, version: str, user_id: str) -> UserRow | None:
        sql = "SELECT data FROM users WHERE version = ? AND user_id = ?"
        row = self._db("snapshots").execute(sql, (version, user_id)).fetchone()
        return codec.decode_user(user_id, row[0]) if row else None

    def read_items(self, version: str, items: Iterable[int] | None = None) -> dict[int, ItemRow]:
        conn = self._db("snapshots")
        if items is None:
            rows: Iterable[tuple[Any, ...]] = conn.execute("SELECT item, data FROM items WHERE version = ?", (version,))
        else:
            keys = [int(i) for i in items]
            rows = self._select_in(
                conn, "SELECT item, data FROM items WHERE version = ? AND item IN ({})", (version,), keys
            )
        return codec.decode_items(version, rows)

    @staticmethod
    def _select_in(
        conn: sqlite3.Connection, sql: str, lead: tuple[Any, ...], keys: list[Any]
    ) -> Iterator[tuple[Any, ...]]:
        for i in range(0, len(keys), _IN_BATCH):
            batch = keys[i : i + _IN_BATCH]
            yield from conn.execute(sql.format(",".join("?" * len(batch))), (*lead, *batch))

    # ---- fresh state ----------------------------------------------------------------------------------------

    def write_fresh_users(self, states: Iterable[FreshUser]) -> int:
        return self._write_fresh("fresh_users", ((s.user_id, base.encode_fresh(s)) for s in states))

    def read_fresh_users(self, user_ids: Iterable[str]) -> dict[str, FreshUser]:
        return base.decode_fresh_users(self._read_fresh("fresh_users", "user_id", user_ids))

    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        return self._write_fresh("trending", ((t.key, base.encode_fresh(t)) for t in items))

    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        return {k: base.decode_trending(v) for k, v in self._read_fresh("trending", "item_id", item_ids)}

    def _write_fresh(self, table: str, pairs: Iterable[tuple[str, bytes]]) -> int:
        expires = time.time() + self.settings.fresh_ttl_s
        with self._write("fresh") as conn:
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?)",  # noqa: S608
                ((self._ns, key, data, expires) for key, data in pairs),
            )
            return conn.total_changes - before

    def _read_fresh(self, table: str, key: str, keys: Iterable[str] | None) -> Iterator[tuple[str, bytes]]:
        conn = self._db("fresh")
        now = time.time()
        if keys is None:
            sql = f"SELECT {key}, data FROM {table} WHERE ns = ? AND expires_at > ?"  # noqa: S608
            yield from conn.execute(sql, (self._ns, now))
            return
        sql = f"SELECT {key}, data FROM {table} WHERE ns = ? AND expires_at > ? AND {key} IN ({{}})"  # noqa: S608
        yield from self._select_in(conn, sql, (self._ns, now), list(keys))

    # ---- event ids ------------------------------------------------------------------------------------------

    def claim_event_ids(self, claims: Mapping[str, base.LogPosition], ttl_s: float) -> dict[str, base.LogPosition]:
        if not claims:
            return {}
        now = time.time()
        with self._write("fresh") as conn:
            conn.executemany(
                CLAIM_EVENT_ID, ((self._ns, eid, p, o, now + ttl_s, now) for eid, (p, o) in claims.items())
            )
            owners = {eid: (p, o) for eid, p, o in self._select_in(conn, SELECT_EVENT_IDS, (self._ns,), list(claims))}
            if now - getattr(self, "_event_ids_swept", 0.0) >= _EVENT_ID_SWEEP_S:
                conn.execute(DROP_EXPIRED_EVENT_IDS, (self._ns, now))
                self._event_ids_swept = now
        return owners

    def release_event_ids(self, claims: Mapping[str, base.LogPosition]) -> None:
        if claims:
            with self._write("fresh") as conn:
                conn.executemany(RELEASE_EVENT_ID, ((self._ns, eid, p, o) for eid, (p, o) in claims.items()))

    # ---- coordination -----------------------------------------------------------------------------------------

    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT owner, expires_at FROM locks WHERE ns = ? AND name = ?", (self._ns, name)
            ).fetchone()
            if row and row[0] != owner and row[1] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?)", (self._ns, name, owner, now + ttl_s))
            return True

    def unlock(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM locks WHERE ns = ? AND name = ? AND owner = ?", (self._ns, name, owner))

    def lock_holder(self, name: str) -> tuple[str, float] | None:
        row = (
            self._db("snapshots")
            .execute("SELECT owner, expires_at FROM locks WHERE ns = ? AND name = ?", (self._ns, name))
            .fetchone()
        )
        if row is None or row[1] <= time.time():
            return None
        return row[0], row[1] - time.time()

    def ping(self) -> None:
        self._check_files()
        try:
            self._db("snapshots").execute("SELECT COUNT(*) FROM pointer").fetchone()
            self._db("fresh").execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise base.StoreUnavailableError(f"SQLite store in {self.path.resolve()} does not answer: {exc}") from exc

    def close(self) -> None:
        """Close the connections of this thread and of threads that have ended; drop the others.

        Another thread may be inside a query on its connection right now (a request or a watcher still finishing
        as the server stops), and closing a connection under a running statement crashes the process. Dropping
        the store's references instead closes each of those connections the moment its thread lets go of it.
        Every call after ``close`` raises ``StoreUnavailableError``.
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
