"""A corrupt batch row under the speed layer: that user is folded in without their batch history; the consumer
neither crashes nor stops, and every other user is applied as usual."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.eventlog import open_log
from lambdarec.settings import Settings
from lambdarec.store import open_store
from speed_layer.consumer import SpeedConsumer

T0 = datetime(2024, 2, 1, tzinfo=UTC).timestamp()


def test_a_corrupt_user_row_costs_that_user_its_history_not_the_consumer(tmp_path: Path) -> None:
    log_file = tmp_path / "log.parquet"
    synthesize(SynthSpec(users=200, items=150, events=8_000, seed=9)).events.write_parquet(log_file)
    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "batch": {"top_k": 20, "train": {"iterations": 3}},
        }
    )
    version = run_batch(settings, interactions=str(log_file), as_of=datetime.fromtimestamp(T0, UTC),
                        force=True, progress=False).manifest["version"]  # fmt: skip
    with sqlite3.connect(tmp_path / "store" / "snapshots.sqlite") as conn:
        (data,) = conn.execute("SELECT data FROM users WHERE version = ? AND user_id = 'u5'", (version,)).fetchone()
        conn.execute("UPDATE users SET data = ? WHERE version = ? AND user_id = 'u5'", (data[:-1], version))
    events = [
        {"event_id": f"e{i}", "user_id": user, "item_id": f"i{i % 40}", "event_type": "view", "timestamp": T0 + 1 + i}
        for i, user in enumerate(["u5", "u6"] * 10)
    ]
    with open_log(settings) as log:
        log.ensure_topic()
        log.append([json.dumps(e).encode() for e in events], keys=[e["user_id"] for e in events])
    with SpeedConsumer(settings) as consumer:
        stats = consumer.run(until_idle_s=2.0).to_json()
    assert stats["processed"] == len(events) and stats["dead_lettered"] == 0, json.dumps(stats)
    with open_store(settings) as store:
        fresh = store.read_fresh_users(["u5", "u6"])
    assert len(fresh["u5"].events) == 10 and fresh["u5"].vector is not None  # folded in from fresh events alone
    assert len(fresh["u6"].events) == 10 and fresh["u6"].vector is not None


def test_a_corrupt_fresh_state_restarts_that_user_and_the_consumer_goes_on(tmp_path: Path) -> None:
    settings = Settings.load(
        overrides={"store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/events"}}
    )
    with open_store(settings):
        pass  # creates the store's files
    with sqlite3.connect(tmp_path / "store" / "fresh.sqlite") as conn:
        sql = "INSERT INTO fresh_users (ns, user_id, data, expires_at) VALUES (?, 'u1', ?, 4e9)"
        conn.execute(sql, (settings.store.namespace, b"\xc1"))
    events = [
        {"event_id": f"e{i}", "user_id": f"u{i % 2}", "item_id": "i1", "event_type": "view", "timestamp": T0 + i}
        for i in range(6)
    ]
    with open_log(settings) as log:
        log.ensure_topic()
        log.append([json.dumps(e).encode() for e in events], keys=[e["user_id"] for e in events])
    with SpeedConsumer(settings) as consumer:
        stats = consumer.run(until_idle_s=2.0).to_json()
    assert stats["processed"] == len(events), json.dumps(stats)
    with open_store(settings) as store:
        fresh = store.read_fresh_users(["u0", "u1"])
    assert len(fresh["u0"].events) == 3 and len(fresh["u1"].events) == 3  # u1's bad row was replaced
