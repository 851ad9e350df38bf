"""The embedded ``OnlineStore``: SQLite in WAL mode, in one directory, stdlib only.

The files and tables are in ``sqlite_schema``, the per-thread connections (and the watch for deleted or restored
files) in ``sqlite_files``, the fresh state in ``sqlite_fresh``; ``publish`` flips the pointer in one transaction.

Example
-------
>>> store = SQLiteStore(StoreSettings(url="sqlite:///var/store"))  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser, ItemRow, LogPosition, ShownItems, TrendingItem, UserRow
from lambdarec.settings import StoreSettings
from lambdarec.store import codec, lifecycle, versions
from lambdarec.store.catalog import CatalogOf
from lambdarec.store.coordination import ClaimScope
from lambdarec.store.errors import SnapshotNotFoundError, StoreUnavailableError
from lambdarec.store.port import OnlineStore
from lambdarec.store.snapshot_info import SnapshotInfo, stored_info
from lambdarec.store.sqlite_catalog import SQLiteCatalog
from lambdarec.store.sqlite_files import Connections, select_in
from lambdarec.store.sqlite_fresh import FreshTables
from lambdarec.store.sqlite_schema import CLAIMS_FILE, FRESH_FILE, SHOWN_FILE, SNAPSHOTS_FILE, store_dir

log = get_logger(__name__)

_INFO = "SELECT version, state, created_at, published_at, meta, manifest FROM snapshots WHERE ns = ?"


class SQLiteStore(CatalogOf, OnlineStore):
    """``OnlineStore`` on SQLite files in the directory named by ``settings.url``."""

    embedded = True

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self.path = store_dir(settings.url)
        self._ns = settings.namespace
        self._files = Connections(self.path, settings)
        self._db, self._write = self._files.db, self._files.write
        self._fresh = FreshTables(self._files, settings)
        self._catalog = SQLiteCatalog(self._files, settings)
        self._current = versions.CurrentPointer(self._read_pointer, settings.current_cache_s)
        log.debug("store.opened", backend="sqlite", path=str(self.path), namespace=self._ns)

    def _state(self, conn: sqlite3.Connection, version: str) -> Any:
        row = conn.execute("SELECT state FROM snapshots WHERE version = ? AND ns = ?", (version, self._ns)).fetchone()
        return row[0] if row else None

    # ---- snapshot lifecycle -----------------------------------------------------------------------------------

    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        version = versions.new_version()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO snapshots (version, ns, state, created_at, meta) VALUES (?, ?, 'writing', ?, ?)",
                (version, self._ns, time.time(), lifecycle.meta_json(meta, "meta")),
            )
        log.info("snapshot.begun", version=version, backend="sqlite")
        return version

    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        data = codec.array_to_bytes(np.asarray(array))
        pieces = codec.chunk(data)
        with self._write() as conn:
            lifecycle.require_writing(version, self._state(conn, version))
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
            lifecycle.require_writing(version, self._state(conn, version))
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
        return problems + lifecycle.array_problems(self, version)

    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        manifest_text = lifecycle.meta_json(manifest, "manifest")
        users, items = lifecycle.check_publishable(self, version, manifest)
        with self._write() as conn:
            lifecycle.require_writing(version, self._state(conn, version))
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
        return [stored_info(row, current) for row in rows.fetchall()]

    def get_snapshot(self, version: str) -> SnapshotInfo:
        row = self._db("snapshots").execute(_INFO + " AND version = ?", (self._ns, version)).fetchone()
        if row is None:
            raise SnapshotNotFoundError(f"no snapshot has version {version!r} in namespace {self._ns!r}")
        return stored_info(row, self.current_version(max_age_s=0))

    def activate(self, version: str) -> None:
        lifecycle.check_activatable(self, self.get_snapshot(version))
        with self._write() as conn:
            if self._state(conn, version) != "published":  # pruned meanwhile
                lifecycle.require_activatable(self.get_snapshot(version))
            conn.execute("INSERT OR REPLACE INTO pointer (ns, version) VALUES (?, ?)", (self._ns, version))
        self._current.set(version)
        log.info("snapshot.activated", version=version, backend="sqlite")

    def prune(self, keep: int) -> list[str]:
        plan = lifecycle.prune_plan(self.list_snapshots(), keep, datetime.now(UTC), self.settings.abandon_after_s)
        for version in plan:
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM pointer WHERE version = ?", (version,)).fetchone():
                    continue  # activated meanwhile
                conn.execute("UPDATE snapshots SET state = 'retired' WHERE version = ?", (version,))
                for table in ("users", "items", "arrays", "array_chunks"):
                    conn.execute(f"DELETE FROM {table} WHERE version = ?", (version,))  # noqa: S608
        self._fresh.drop_expired()  # expired fresh state is invisible already; reclaim its space here
        log.info("snapshots.pruned", retired=plan, keep=keep, backend="sqlite")
        return plan

    def current_version(self, max_age_s: float | None = None) -> str | None:
        return self._current.get(max_age_s)

    def _read_pointer(self) -> str | None:
        self._files.check_files()  # a poll of the pointer is also the moment to notice deleted or restored files
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
        return codec.decode_users(version, select_in(self._db("snapshots"), sql, (version,), list(user_ids)))

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
            rows = select_in(conn, "SELECT item, data FROM items WHERE version = ? AND item IN ({})", (version,), keys)
        return codec.decode_items(version, rows)

    # ---- fresh state ----------------------------------------------------------------------------------------

    def write_fresh_users(self, states: Iterable[FreshUser]) -> int:
        return self._fresh.write_users(states)

    def read_fresh_users(self, user_ids: Iterable[str]) -> dict[str, FreshUser]:
        return self._fresh.read_users(user_ids, self.decoded_fresh)

    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        return self._fresh.write_trending(items)

    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        return self._fresh.read_trending(item_ids)

    def write_shown(self, rows: Iterable[ShownItems]) -> int:
        return self._fresh.write_shown(rows)

    def read_shown(self, user_ids: Iterable[str]) -> dict[str, ShownItems]:
        return self._fresh.read_shown(user_ids)

    def write_erasures(self, users: Sequence[FreshUser], shown: Sequence[ShownItems], *, rows: bool = True) -> int:
        return self._fresh.write_erasures(users, shown, rows=rows)

    def claim_event_ids(
        self, claims: Mapping[str, LogPosition], ttl_s: float, scope: ClaimScope = "events"
    ) -> dict[str, LogPosition]:
        return self._fresh.claim_event_ids(claims, ttl_s, scope)

    def release_event_ids(self, claims: Mapping[str, LogPosition], scope: ClaimScope = "events") -> None:
        self._fresh.release_event_ids(claims, scope)

    def state_dedup_from(self, window_s: float) -> float:
        return self._fresh.state_dedup_from()

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
        self._files.check_files()
        try:
            self._db("snapshots").execute("SELECT COUNT(*) FROM pointer").fetchone()
            self._db("fresh").execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store in {self.path.resolve()} does not answer: {exc}") from exc

    def drop_schema(self) -> None:
        self.close()
        for name in (SNAPSHOTS_FILE, FRESH_FILE, SHOWN_FILE, CLAIMS_FILE):
            for suffix in ("", "-wal", "-shm"):
                (self.path / f"{name}{suffix}").unlink(missing_ok=True)
        log.info("store.dropped", backend="sqlite", path=str(self.path))

    def close(self) -> None:
        """Release this thread's connections and those of ended threads (see ``Connections.close``); every call
        after ``close`` raises ``StoreUnavailableError``."""
        self._files.close()
