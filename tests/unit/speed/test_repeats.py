"""Events resent under ids already applied (a producer's retry, a replayed file) are skipped as repeats, and
with the ids claimed in the store (``events.dedup = "store"``) skipping them costs the consumer no store reads: a
burst of resends must not slow fresh events down (issue 17). Looked up in the states (``"state"``, and ``"auto"``
on a new namespace), a resend costs the read that finds it and no claim (tests/unit/speed/test_seen.py)."""

from __future__ import annotations

import json
from pathlib import Path

from lambdarec.eventlog import open_log
from lambdarec.settings import Settings
from lambdarec.store.sqlite import SQLiteStore
from speed_layer.consumer import SpeedConsumer

T0 = 1_706_745_600.0  # 2024-02-01
EVENTS = 200


class CountingStore(SQLiteStore):
    """The SQLite store, counting the users and trending shards the consumer reads."""

    users_read = 0
    shards_read = 0

    def read_fresh_users(self, user_ids):  # type: ignore[no-untyped-def]
        user_ids = list(user_ids)
        self.users_read += len(user_ids)
        return super().read_fresh_users(user_ids)

    def read_trending(self, item_ids=None):  # type: ignore[no-untyped-def]
        item_ids = None if item_ids is None else list(item_ids)
        self.shards_read += len(item_ids or ())
        return super().read_trending(item_ids)


def lines(prefix: str) -> list[bytes]:
    return [
        json.dumps(
            {
                "event_id": f"{prefix}{k}",
                "user_id": f"u{k % 50}",
                "item_id": f"i{k % 9}",
                "event_type": "view",
                "timestamp": T0 + k,
            }
        ).encode()
        for k in range(EVENTS)
    ]


def test_a_batch_of_resent_events_is_skipped_without_reading_state(tmp_path: Path) -> None:
    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "speed": {"poll_max_records": 1000, "max_wait_ms": 20},
            "events": {"dedup": "store"},
        }
    )
    with open_log(settings) as log:
        log.append(lines("e"), keys=[f"u{k % 50}" for k in range(EVENTS)])
    store = CountingStore(settings.store)
    with store, SpeedConsumer(settings, store=store) as consumer:
        while consumer.stats.processed < EVENTS:
            consumer.step()
        before = store.read_fresh_users([f"u{k}" for k in range(50)])
        store.users_read = store.shards_read = 0
        with open_log(settings) as log:
            log.append(lines("e"), keys=[f"u{k % 50}" for k in range(EVENTS)])  # the same ids resent
        while consumer.stats.duplicates < EVENTS:
            assert consumer.step() > 0
        assert (store.users_read, store.shards_read) == (0, 0)
        assert consumer.stats.processed == EVENTS
        assert store.read_fresh_users([f"u{k}" for k in range(50)]) == before
