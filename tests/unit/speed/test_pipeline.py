"""The running consumer writes a batch's state while it polls and computes the next one (issue 17), and still
commits a position only once the state of every event before it is written: no event lost, none counted twice,
whatever fails in flight."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lambdarec.eventlog import open_log
from lambdarec.settings import Settings
from lambdarec.store import StoreError, open_store
from lambdarec.store.sqlite import SQLiteStore
from speed_layer.consumer import SpeedConsumer

T0 = 1_706_745_600.0  # 2024-02-01
EVENTS, USERS = 600, 40  # every batch names users the batch before it is still writing


def settings_for(tmp_path: Path, store: str) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/{store}"},
            "log": {"url": f"sqlite:///{tmp_path}/events", "consumer_group": store},
            "speed": {"poll_max_records": 50, "max_wait_ms": 20, "retry_initial_s": 0.01, "retry_max_s": 0.05},
            "events": {"dedup_window_s": 0},
        }
    )


def append_events(settings: Settings) -> None:
    users = [f"u{k % USERS}" for k in range(EVENTS)]
    lines = [
        json.dumps(
            {"event_id": f"e{k}", "user_id": u, "item_id": f"i{k % 7}", "event_type": "view", "timestamp": T0 + k}
        ).encode()
        for k, u in enumerate(users)
    ]
    with open_log(settings) as log:
        log.append(lines, keys=users)


def clean_pass(tmp_path: Path) -> dict:
    """Fresh state after one synchronous pass (poll, write, commit, one batch at a time)."""
    settings = settings_for(tmp_path, "reference")
    with SpeedConsumer(settings) as consumer:
        while consumer.stats.processed < EVENTS:
            consumer.step()
    with open_store(settings) as store:
        return dict(store.read_fresh_users([f"u{k}" for k in range(USERS)]))


class RemoteLikeStore(SQLiteStore):
    """The SQLite store as the consumer treats a remote one (Cassandra): writes and claims on their own threads."""

    embedded = False


def test_writes_overlap_the_next_poll_and_commits_follow_the_writes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "store")
    append_events(settings)
    in_flight = threading.Event()
    written: dict[str, int] = {}  # partition -> highest next position whose state is written
    overlapped, early_commits = [], []
    store = RemoteLikeStore(settings.store)
    with store, SpeedConsumer(settings, store=store) as consumer:
        write, poll, commit = consumer.store.write_fresh_users, consumer.consumer.poll, consumer.consumer.commit

        def slow_write(states):  # type: ignore[no-untyped-def]
            states = list(states)
            in_flight.set()
            try:
                time.sleep(0.05)
                return write(states)
            finally:
                for s in states:
                    for p, nxt in s.positions.items():
                        written[p] = max(written.get(p, 0), nxt)
                in_flight.clear()

        def watched_poll(*args, **kwargs):  # type: ignore[no-untyped-def]
            overlapped.append(in_flight.is_set())
            return poll(*args, **kwargs)

        def checked_commit(positions):  # type: ignore[no-untyped-def]
            early_commits.extend(p for p, nxt in positions.items() if written.get(str(p), 0) < nxt)
            return commit(positions)

        consumer.store.write_fresh_users = slow_write  # type: ignore[method-assign]
        consumer.consumer.poll = watched_poll  # type: ignore[method-assign]
        consumer.consumer.commit = checked_commit  # type: ignore[method-assign]
        stats = consumer.run(until_idle_s=0.3)
    assert stats.processed == EVENTS and stats.dead_lettered == 0
    assert any(overlapped), "the next poll never ran while a batch's state was being written"
    assert not early_commits, f"positions committed before their state was written: partitions {early_commits}"
    with open_store(settings) as store:
        assert dict(store.read_fresh_users([f"u{k}" for k in range(USERS)])) == clean_pass(tmp_path)


@pytest.mark.parametrize("store_kind", [SQLiteStore, RemoteLikeStore])
def test_a_write_failing_in_flight_is_redelivered_once(tmp_path: Path, store_kind: type[SQLiteStore]) -> None:
    settings = settings_for(tmp_path, "store")
    append_events(settings)
    calls = []
    store = store_kind(settings.store)
    with store, SpeedConsumer(settings, store=store) as consumer:
        write = consumer.store.write_fresh_users

        def failing_write(states):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) in (3, 4):
                raise StoreError("store went away mid-write (test)")
            return write(states)

        consumer.store.write_fresh_users = failing_write  # type: ignore[method-assign]
        stats = consumer.run(until_idle_s=0.3)
    assert len(calls) > 4 and stats.processed == EVENTS
    with open_store(settings) as store:
        assert dict(store.read_fresh_users([f"u{k}" for k in range(USERS)])) == clean_pass(tmp_path)


def test_a_failed_state_read_leaves_no_read_running_into_the_retry(tmp_path: Path) -> None:
    """A poll's reads of a remote store run side by side; when one fails, the others are waited for before the
    batch is tried again, so no read of the failed attempt runs beside the retry's."""
    settings = settings_for(tmp_path, "store")
    append_events(settings)
    store = RemoteLikeStore(settings.store)
    running, most, failed, calls = [0], [0], [], [0]
    lock = threading.Lock()
    with store, SpeedConsumer(settings, store=store) as consumer:
        read_fresh, read_trending = consumer.store.read_fresh_users, consumer.store.read_trending

        def failing_read(user_ids):  # type: ignore[no-untyped-def]
            if not failed:
                failed.append(1)
                raise StoreError("store went away mid-read (test)")
            return read_fresh(user_ids)

        def slow_read(keys=None):  # type: ignore[no-untyped-def]
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                calls[0] += 1
                first = calls[0] == 1
            try:
                time.sleep(0.2 if first else 0.0)  # the failed attempt's read outlasts the retry's back-off
                return read_trending(keys)
            finally:
                with lock:
                    running[0] -= 1

        consumer.store.read_fresh_users = failing_read  # type: ignore[method-assign]
        consumer.store.read_trending = slow_read  # type: ignore[method-assign]
        stats = consumer.run(until_idle_s=0.3)
    assert failed and stats.processed == EVENTS
    assert most[0] == 1, "a read of the failed attempt was still running when the retry's began"
