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
