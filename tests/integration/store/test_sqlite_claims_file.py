"""On the SQLite store the event-id claims are in a file of their own (``claims.sqlite``; impressions' claims in
``shown.sqlite``, see test_sqlite_impression_claims): a claims transaction held there must never hold up the
positive-event consumer's state write; claims an older release kept in ``fresh.sqlite`` still count."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import open_store, sqlite_files


def claims_file(directory: Path) -> Path:
    """The database file of ``directory`` whose ``event_ids`` table holds rows."""
    for path in sorted(directory.glob("*.sqlite")):
        with sqlite3.connect(path) as conn:
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'event_ids'").fetchone()
            if has and conn.execute("SELECT 1 FROM event_ids LIMIT 1").fetchone():
                return path
    raise AssertionError("no file holds the claims")


def test_a_claims_transaction_held_elsewhere_never_holds_up_a_fresh_state_write(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}", request_timeout_s=1.0)
    with open_store(settings) as store:
        assert store.claim_event_ids({"e1": (0, 1)}, 60.0) == {"e1": (0, 1)}
        holder = sqlite3.connect(claims_file(tmp_path), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the impressions consumer, mid-claim, in another process
            holder.execute("UPDATE event_ids SET expires_at = expires_at")
            # the holder never lets go: a write that waited for its lock would fail after request_timeout_s
            assert store.write_fresh_users([FreshUser(user_id="u1")]) == 1
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert set(store.read_fresh_users(["u1"])) == {"u1"}


def test_a_live_claim_an_older_release_kept_in_fresh_sqlite_still_counts(tmp_path: Path) -> None:
    settings = StoreSettings(url=f"sqlite:///{tmp_path}")
    with open_store(settings):
        pass
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh:  # as an older release left it
        fresh.executemany(
            "INSERT INTO event_ids VALUES (?, ?, ?, ?, ?)",
            [(settings.namespace, "old", 0, 7, time.time() + 600), (settings.namespace, "gone", 0, 8, time.time() - 1)],
        )
    with open_store(settings) as store:
        assert store.claim_event_ids({"old": (1, 3), "gone": (1, 4), "new": (1, 5)}, 60.0) == {
            "old": (0, 7),  # claimed before the upgrade: a resend is still a repeat
            "gone": (1, 4),  # expired: taken
            "new": (1, 5),
        }
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh:
        assert fresh.execute("SELECT COUNT(*) FROM event_ids").fetchone() == (0,)


def test_many_old_claims_move_in_chunks_and_a_live_one_replaces_an_expired_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_files, "CLAIMS_MOVED_PER_TXN", 7)  # 25 old claims: four chunks
    settings = StoreSettings(url=f"sqlite:///{tmp_path}")
    ns = settings.namespace
    with open_store(settings):
        pass
    now = time.time()
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh:  # as an older release left it
        fresh.executemany("INSERT INTO event_ids VALUES (?, ?, ?, ?, ?)",
                          [(ns, f"e{i}", 0, i, now + 600) for i in range(25)])  # fmt: skip
    with sqlite3.connect(tmp_path / "claims.sqlite") as claims:  # an expired claim of the same id already there
        claims.execute("INSERT INTO event_ids VALUES (?, 'e3', 5, 5, ?)", (ns, now - 10))
    with open_store(settings) as store:
        resent = {f"e{i}": (1, 100 + i) for i in range(25)}
        assert store.claim_event_ids(resent, 60.0) == {f"e{i}": (0, i) for i in range(25)}, "every old claim counts"
    with sqlite3.connect(tmp_path / "fresh.sqlite") as fresh:
        assert fresh.execute("SELECT COUNT(*) FROM event_ids").fetchone() == (0,)
