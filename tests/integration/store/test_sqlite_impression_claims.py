"""On the SQLite store impressions' event-id claims live in ``shown.sqlite`` beside their rows (issue 16): the
impressions consumer (ten times the click volume) and the positive-event consumer share no file they write, and
an impression an older release claimed in ``claims.sqlite`` is still a repeat after the upgrade."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lambdarec.settings import StoreSettings
from lambdarec.store import open_store


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process's write transaction on ``path``, never let go while inside."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_neither_scope_of_claims_waits_for_the_other_scopes_write_lock(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}", request_timeout_s=1.0)
    with open_store(settings) as store:
        # a claim that waited for the held lock would fail after request_timeout_s
        with write_lock_held(tmp_path / "claims.sqlite"):  # the positive-event consumer, mid-claim
            assert store.claim_event_ids({"i1": (0, 1)}, 60.0, "impressions") == {"i1": (0, 1)}
        with write_lock_held(tmp_path / "shown.sqlite"):  # the impressions consumer, mid-claim or mid-write
            assert store.claim_event_ids({"e1": (0, 1)}, 60.0) == {"e1": (0, 1)}
        assert store.claim_event_ids({"i1": (0, 2)}, 60.0, "impressions") == {"i1": (0, 1)}
        assert store.claim_event_ids({"e1": (0, 2)}, 60.0) == {"e1": (0, 1)}


def as_an_older_release_left_it(directory: Path, namespace: str, claims: list[tuple[str, int, int, float]]) -> None:
    """Every claim in claims.sqlite (impressions' too), no claims tables in shown.sqlite, no scopes noted."""
    with sqlite3.connect(directory / "shown.sqlite") as shown:
        shown.execute("DROP TABLE event_ids")
    with sqlite3.connect(directory / "claims.sqlite") as conn:
        conn.execute("DROP TABLE claim_scopes")
        conn.executemany("INSERT INTO event_ids VALUES (?, ?, ?, ?, ?)", [(namespace, *c) for c in claims])


def test_an_impression_an_older_release_claimed_is_still_a_repeat_after_the_upgrade(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}")
    with open_store(settings):
        pass
    now = time.time()
    as_an_older_release_left_it(tmp_path, settings.namespace, [("imp-1", 0, 7, now + 600), ("imp-2", 0, 8, now - 1)])
    with open_store(settings) as store:
        owners = store.claim_event_ids({"imp-1": (1, 3), "imp-2": (1, 4), "imp-3": (1, 5)}, 60.0, "impressions")
        assert owners == {
            "imp-1": (0, 7),  # claimed before the upgrade: a resend is still a repeat
            "imp-2": (1, 4),  # that claim expired: taken
            "imp-3": (1, 5),
        }
        assert store.claim_event_ids({"imp-1": (0, 7)}, 60.0, "impressions") == {"imp-1": (0, 7)}, "redelivered"
    with open_store(settings) as store:  # the next process reads the same window
        assert store.claim_event_ids({"imp-1": (2, 2)}, 60.0, "impressions") == {"imp-1": (0, 7)}


def test_a_new_store_keeps_no_legacy_window_so_the_scopes_are_apart_from_the_start(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}")
    with open_store(settings) as store:
        assert store.claim_event_ids({"x": (0, 1)}, 60.0) == {"x": (0, 1)}
    with open_store(settings) as store:  # reopened: claims exist now, but the scopes were apart from the start
        assert store.claim_event_ids({"x": (1, 1)}, 60.0, "impressions") == {"x": (1, 1)}
    (tmp_path / "shown.sqlite").unlink()  # how the runbook resets fatigue: no new window either
    with open_store(settings) as store:
        assert store.claim_event_ids({"x": (1, 2)}, 60.0, "impressions") == {"x": (1, 2)}
    with sqlite3.connect(tmp_path / "claims.sqlite") as claims:
        assert claims.execute("SELECT legacy_until FROM claim_scopes").fetchall() == [(0.0,)]


def test_opening_the_store_waits_for_no_consumers_write_transaction(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}", request_timeout_s=1.0)
    with open_store(settings):
        pass
    # an impressions consumer mid-sweep, a positive consumer mid-claim: a process starting meanwhile opens at once
    shown, claims = write_lock_held(tmp_path / "shown.sqlite"), write_lock_held(tmp_path / "claims.sqlite")
    with shown, claims, open_store(settings) as store:
        assert store.read_shown(["u1"]) == {}


def test_a_shown_sqlite_restored_from_before_its_claims_tables_takes_claims_without_a_restart(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}")
    with open_store(settings) as store:
        assert store.claim_event_ids({"i1": (0, 1)}, 60.0, "impressions") == {"i1": (0, 1)}
        backup = tmp_path / "backup.sqlite"
        with sqlite3.connect(backup) as old:  # a backup taken under an older release: no claims tables
            old.execute("CREATE TABLE shown_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, "
                        "expires_at REAL NOT NULL, PRIMARY KEY (ns, user_id)) WITHOUT ROWID")  # fmt: skip
        old.close()
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"shown.sqlite{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, tmp_path / "restored.sqlite")
        os.replace(tmp_path / "restored.sqlite", tmp_path / "shown.sqlite")  # the restore: a new inode
        time.sleep(0.3)  # the store checks its files' identities every 0.25 s of calls
        assert store.claim_event_ids({"i2": (0, 2)}, 60.0, "impressions") == {"i2": (0, 2)}
        assert store.claim_event_ids({"i2": (0, 3)}, 60.0, "impressions") == {"i2": (0, 2)}
