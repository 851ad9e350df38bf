"""The store contract on SQLite (embedded: no server needed)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lambdarec.erasure import tombstone
from lambdarec.model.rows import ShownItems
from lambdarec.settings import StoreSettings
from lambdarec.store import FreshUser, OnlineStore, StoreUnavailableError, TrendingItem, open_store
from lambdarec.store.codec import encode_fresh
from lambdarec.store.shown_codec import encode_shown
from lambdarec.store.sqlite import SQLiteStore
from lambdarec.store.sqlite_schema import store_dir
from tests.integration.store.contract import StoreContract


class TestSQLiteStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "store"

    def store_url(self) -> str:
        return f"sqlite:///{self.directory}"  # tmp_path is absolute, so four slashes

    def _sql(self, file: str, sql: str, params: tuple) -> list[tuple]:
        with sqlite3.connect(self.directory / file) as conn:
            return conn.execute(sql, params).fetchall()

    def corrupt_array_chunk(self, store: OnlineStore, version: str, name: str) -> None:
        self._sql("snapshots.sqlite", "UPDATE array_chunks SET data = ? WHERE version = ? AND name = ? AND chunk = 0",
                  (b"\x93NUMPY garbage", version, name))  # fmt: skip

    def tamper_row(self, store: OnlineStore, version: str, key: str | int, edit: Callable[[bytes], bytes]) -> None:
        table, column = ("users", "user_id") if isinstance(key, str) else ("items", "item")
        where = f"FROM {table} WHERE version = ? AND {column} = ?"
        (data,) = self._sql("snapshots.sqlite", f"SELECT data {where}", (version, key))[0]
        self._sql("snapshots.sqlite", f"UPDATE {table} SET data = ? WHERE version = ? AND {column} = ?",
                  (edit(data), version, key))  # fmt: skip

    def fresh_ttl_left(self, store: OnlineStore, table: str, key: str) -> float | None:
        column = "user_id" if table in ("fresh_users", "shown_users") else "item_id"
        file = "shown.sqlite" if table == "shown_users" else "fresh.sqlite"  # impressions rows: a file of their own
        rows = self._sql(file, f"SELECT expires_at FROM {table} WHERE ns = ? AND {column} = ?",
                         (self.namespace, key))  # fmt: skip
        return rows[0][0] - time.time() if rows else None


def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store_dir("sqlite:///var/store") == Path("var/store")
    assert store_dir("sqlite:////srv/recs") == Path("/srv/recs")
    with pytest.raises(ValueError, match="sqlite:///relative/dir"):
        store_dir("sqlite://host/dir")
    monkeypatch.chdir(tmp_path)
    with open_store(StoreSettings(url="sqlite:///rel/store")) as store:
        store.ping()
    assert {p.name for p in (tmp_path / "rel" / "store").iterdir()} >= {"snapshots.sqlite", "fresh.sqlite"}


def test_files_are_in_wal_mode(tmp_path: Path) -> None:
    with open_store(StoreSettings(url=f"sqlite:///{tmp_path}")) as store:
        store.begin_snapshot({})
    for name in ("snapshots.sqlite", "fresh.sqlite", "shown.sqlite"):
        with sqlite3.connect(tmp_path / name) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_directory_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="file"):
        SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}/file/store"))


def test_expired_fresh_state_is_invisible_and_prune_reclaims_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60))
    store.write_fresh_users([FreshUser(user_id="u")])
    store.write_trending([TrendingItem(item_id="i", count=1.0)])
    later = time.time() + 61
    monkeypatch.setattr("lambdarec.store.sqlite.time.time", lambda: later)
    assert store.read_fresh_users(["u"]) == {} and store.read_trending(None) == {}
    store.prune(3)
    with sqlite3.connect(tmp_path / "fresh.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM fresh_users").fetchone() == (0,)
    store.close()


def test_prune_deletes_the_rows_of_retired_versions(tmp_path: Path) -> None:
    store = SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}"))
    versions = []
    for _ in range(3):
        version = store.begin_snapshot({})
        store.write_array(version, "a", np.zeros(3))
        versions.append(version)
        store.publish(version, {"counts": {"user_rows": 0, "item_rows": 0}})
    assert store.prune(1) == versions[1::-1]
    with sqlite3.connect(tmp_path / "snapshots.sqlite") as conn:
        left = conn.execute("SELECT DISTINCT version FROM array_chunks").fetchall()
    assert left == [(versions[2],)]
    store.close()


def test_drop_schema_deletes_the_files_and_the_next_open_starts_empty(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}/store")
    store = open_store(settings)
    store.begin_snapshot({"run": 1})
    store.write_fresh_users([FreshUser(user_id="u1")])
    store.drop_schema()
    assert list((tmp_path / "store").iterdir()) == []
    with pytest.raises(StoreUnavailableError):
        store.list_snapshots()
    with open_store(settings) as again:
        assert again.list_snapshots() == [] and again.read_fresh_users(["u1"]) == {}


def test_impressions_rows_live_in_a_file_of_their_own_and_an_older_stores_rows_move_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}")).close()
    for suffix in ("", "-wal", "-shm"):  # a store of an older release: impressions rows in fresh.sqlite
        (tmp_path / f"shown.sqlite{suffix}").unlink(missing_ok=True)
    old = ShownItems(user_id="u-old", shown={"i1": [1.0e9]}, positions={"0": 3}, updated_at=1.0e9)
    with sqlite3.connect(tmp_path / "fresh.sqlite") as conn:
        conn.execute("INSERT INTO shown_users VALUES (?, ?, ?, ?)", ("default", "u-old", encode_shown(old),
                                                                     time.time() + 3600))  # fmt: skip

    store = SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60))
    assert store.read_shown(["u-old"]) == {"u-old": old}  # moved on open
    store.write_shown([ShownItems(user_id="u-new", shown={"i2": [2.0e9]})])
    count = "SELECT COUNT(*) FROM shown_users"
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh, sqlite3.connect(tmp_path / "shown.sqlite") as shown:
        assert fresh.execute(count).fetchone() == (0,)  # the positive-event consumer's file holds none
        assert shown.execute(count).fetchone() == (2,)
    store.close()
    again = SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60))  # nothing moved twice
    assert set(again.read_shown(["u-old", "u-new"])) == {"u-old", "u-new"}
    later = time.time() + 3601
    monkeypatch.setattr("lambdarec.store.sqlite.time.time", lambda: later)
    again.prune(3)
    with sqlite3.connect(tmp_path / "shown.sqlite") as shown:
        assert shown.execute(count).fetchone() == (0,)  # expired impressions rows are reclaimed too
    again.close()


def test_an_old_impressions_row_left_in_fresh_sqlite_is_moved_though_shown_sqlite_has_rows(tmp_path: Path) -> None:
    """A crash (or an older release run again) leaves a row in fresh.sqlite beside a shown.sqlite that has rows:
    the next open moves it (a row already in shown.sqlite, written later, wins), never deletes it unmoved."""
    newer = ShownItems(user_id="u-new", shown={"i2": [2.0e9]}, positions={"0": 9}, updated_at=2.0e9)
    with SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}")) as store:
        store.write_shown([newer])
    old = ShownItems(user_id="u-old", shown={"i1": [1.0e9]}, positions={"0": 3}, updated_at=1.0e9)
    stale = ShownItems(user_id="u-new", shown={"i0": [0.5e9]}, positions={"0": 1}, updated_at=0.5e9)
    with sqlite3.connect(tmp_path / "fresh.sqlite") as conn:
        rows = [("default", r.user_id, encode_shown(r), time.time() + 3600) for r in (old, stale)]
        conn.executemany("INSERT INTO shown_users VALUES (?, ?, ?, ?)", rows)
    with SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60)) as store:
        assert store.read_shown(["u-old", "u-new"]) == {"u-old": old, "u-new": newer}
    with SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60)) as store:  # and again: the same
        assert store.read_shown(["u-old", "u-new"]) == {"u-old": old, "u-new": newer}
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh:
        assert fresh.execute("SELECT COUNT(*) FROM shown_users").fetchone() == (0,)


def test_a_store_from_before_erasures_gains_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    """Files an older release created (no ``erasure`` column) are upgraded on open; a file restored from such a
    backup while the store is open is upgraded when the store reconnects to it."""
    old = FreshUser(user_id="u1", recent=[("i1", 10.0)], updated_at=10.0)
    expires = time.time() + 3600
    for file, table, data in (("fresh.sqlite", "fresh_users", encode_fresh(old)),
                              ("shown.sqlite", "shown_users", encode_shown(ShownItems(user_id="u1")))):  # fmt: skip
        with sqlite3.connect(tmp_path / file) as conn:
            conn.execute(f"CREATE TABLE {table} (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL, "
                         "PRIMARY KEY (ns, user_id)) WITHOUT ROWID")  # fmt: skip
            conn.execute(f"INSERT INTO {table} VALUES ('default', 'u1', ?, ?)", (data, expires))
        conn.close()
    with SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}")) as store:
        assert store.read_fresh_users(["u1"]) == {"u1": old}
        assert store.read_shown(["u1"]) == {"u1": ShownItems(user_id="u1")}
        store.write_erasures([tombstone("u1", 100.0, {0: 5})], [])
        store.write_fresh_users([old])  # written from a state read before the erasure
        assert store.read_fresh_users(["u1"])["u1"].recent == []
        backup = tmp_path / "backup.sqlite"
        with sqlite3.connect(backup) as conn:
            conn.execute("CREATE TABLE fresh_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL "
                         "NOT NULL, PRIMARY KEY (ns, user_id)) WITHOUT ROWID")  # fmt: skip
            conn.execute("INSERT INTO fresh_users VALUES ('default', 'u1', ?, ?)", (encode_fresh(old), expires))
        conn.close()
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"fresh.sqlite{suffix}").unlink(missing_ok=True)
        os.replace(backup, tmp_path / "fresh.sqlite")  # the restore: a new inode
        time.sleep(0.3)  # the store checks its files' identities every 0.25 s of calls
        store.read_fresh_users(["u1"])  # noticed here (the call that notices reads the old connection)
        assert store.read_fresh_users(["u1"]) == {"u1": old}
        store.write_erasures([tombstone("u1", 200.0, {0: 9})], [])
        assert store.read_fresh_users(["u1"])["u1"].erased_at == 200.0


def test_an_erasure_expires_with_its_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer starts afresh a user whose erased row expired (it reads nothing): the state it writes is served
    as it is, not masked by the expired row's erasure."""
    store = SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}", fresh_ttl_s=60))
    store.write_erasures([tombstone("u1", 100.0, {0: 5})], [ShownItems(user_id="u1", erasure_seen=100.0)])
    later = time.time() + 61
    monkeypatch.setattr("lambdarec.store.sqlite_fresh.time.time", lambda: later)
    assert store.read_fresh_users(["u1"]) == {} and store.read_shown(["u1"]) == {}
    state = FreshUser(user_id="u1", events=[("i1", 1.0, 1.0)], event_positions=[(0, 1)], positions={"0": 2})
    shown = ShownItems(user_id="u1", shown={"i2": [2.0]}, positions={"0": 2})
    store.write_fresh_users([state])
    store.write_shown([shown])
    assert store.read_fresh_users(["u1"]) == {"u1": state} and store.read_shown(["u1"]) == {"u1": shown}
    store.close()
