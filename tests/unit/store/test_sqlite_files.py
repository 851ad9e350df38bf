"""Deleted and restored SQLite store files are noticed by every call, mapped or not (issue 13, left over from 12).

An open connection keeps reading an unlinked file, so a read that succeeds says nothing. Before, only a pointer
poll or a ping looked at the files: with the fresh-state file unmapped (``store.sqlite.fresh_mmap_mb=0``), the reads in
between kept succeeding, each success reset serving's failure count, and readiness never turned 503.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from lambdarec.settings import StoreSettings
from lambdarec.store import FreshUser, OnlineStore, StoreUnavailableError, open_store

CHECK_EVERY_S = 0.25  # the longest a call may go on reading a deleted file unnoticed


@pytest.fixture(params=[(0, 0), (1024, 1024)], ids=["unmapped", "mapped"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OnlineStore:
    snapshots_mb, fresh_mb = request.param
    settings = StoreSettings(url=f"sqlite:///{tmp_path}/store", current_cache_s=60,
                             sqlite={"mmap_mb": snapshots_mb, "fresh_mmap_mb": fresh_mb})  # fmt: skip
    with open_store(settings) as opened:
        yield opened


def in_new_thread(fn):  # type: ignore[no-untyped-def]
    out: list[BaseException | object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return out[0]


def test_every_call_fails_naming_the_deleted_file_until_it_is_restored(store: OnlineStore, tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store.write_fresh_users([FreshUser(user_id="u1", updated_at=1.0)])
    assert set(store.read_fresh_users(["u1"])) == {"u1"}
    backup = tmp_path / "backup"
    shutil.copytree(directory, backup)
    shutil.rmtree(directory)
    time.sleep(CHECK_EVERY_S + 0.05)
    for _ in range(3):  # not once: every call, so serving's failure count reaches its threshold
        with pytest.raises(StoreUnavailableError, match=r"snapshots\.sqlite was deleted"):
            store.read_fresh_users(["u1"])
        with pytest.raises(StoreUnavailableError, match=r"snapshots\.sqlite was deleted"):
            store.read_trending()
    # a thread that had no connection yet is told the same, not SQLite's "unable to open database file"
    failed = in_new_thread(lambda: store.read_users("v", ["u1"]))
    assert isinstance(failed, StoreUnavailableError) and "snapshots.sqlite was deleted" in str(failed), failed
    shutil.copytree(backup, directory)  # the restore: new files, new inodes
    store.write_fresh_users([FreshUser(user_id="u2", updated_at=2.0)])
    assert set(store.read_fresh_users(["u1", "u2"])) == {"u1", "u2"}
    assert set(in_new_thread(lambda: store.read_fresh_users(["u1", "u2"]))) == {"u1", "u2"}  # type: ignore[arg-type]
