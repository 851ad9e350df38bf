"""Threads of one process writing fresh state at once (the speed consumer's writer and its event-id claims) take
turns on an in-process lock, not through SQLite's busy handler, which sleeps up to 100 ms at a time: a write never
waits on a sleeping retry, and never fails even when the store's timeout is shorter than one such sleep."""

from __future__ import annotations

import threading
from pathlib import Path

from lambdarec.model.rows import FreshUser, TrendingItem
from lambdarec.settings import StoreSettings
from lambdarec.store import open_store


def test_concurrent_fresh_writers_of_one_store_never_hit_the_busy_timeout(tmp_path: Path) -> None:
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path}/store", request_timeout_s=0.001))
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def users() -> None:
        start.wait()
        for k in range(150):
            store.write_fresh_users([FreshUser(user_id=f"u{k}-{j}", positions={"0": k}) for j in range(20)])

    def trending() -> None:
        start.wait()
        for k in range(150):
            store.write_trending([TrendingItem(item_id=f"i{k}-{j}", count=1.0) for j in range(20)])

    def claims() -> None:
        start.wait()
        for k in range(150):
            store.claim_event_ids({f"e{k}-{j}": (0, k * 20 + j) for j in range(20)}, 60.0)

    def guarded(fn):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in (users, trending, claims)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.read_fresh_users([f"u{k}-{j}" for k in range(150) for j in range(20)])) == 3000
    finally:
        store.close()
