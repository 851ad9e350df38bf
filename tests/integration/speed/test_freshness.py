"""Freshness as the speed layer keeps it: each fresh-state row carries its newest event's log append time, and an
idle consumer's snapshot gauge follows flips (issue 18 item 10). Embedded backends; the end-to-end test runs the
same on Kafka and Cassandra."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.eventlog import open_log
from lambdarec.events import Event
from lambdarec.model.rows import TrendingItem
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, open_store
from speed_layer.consumer import SpeedConsumer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store", "current_cache_s": 0},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "batch": {
                "top_k": 20,
                "train": {"iterations": 2, "factors": 8},
                "neighbours": 5,
                "gate": {"holdout_fraction": 0},
            },
        }
    )


def _shards(store: OnlineStore, item_id: str) -> list[TrendingItem]:
    """The trending shards that count ``item_id``."""
    return [t for t in store.read_trending().values() if t.item_id == item_id]


def _publish(settings: Settings, tmp_path: Path, day: int) -> str:
    path = tmp_path / "log.parquet"
    if not path.exists():
        synthesize(SynthSpec(users=60, items=40, events=3000, seed=1)).events.write_parquet(path)
    as_of = datetime(2024, 2, day, tzinfo=UTC)
    return run_batch(settings, interactions=str(path), as_of=as_of, force=True, progress=False).manifest["version"]


def _until(condition, what: str, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _shows(version: str) -> bool:
    return REGISTRY.get_sample_value("lambdarec_speed_snapshot_info", {"version": version}) == 1.0


def test_an_idle_consumer_follows_flips_and_rows_carry_their_append_time(settings: Settings, tmp_path: Path) -> None:
    consumer = SpeedConsumer(settings)
    runner = threading.Thread(target=consumer.run, daemon=True)
    runner.start()
    try:
        first = _publish(settings, tmp_path, 1)
        _until(lambda: _shows(first), f"the idle consumer to show snapshot {first}")
        second = _publish(settings, tmp_path, 2)
        _until(lambda: _shows(second), f"the idle consumer to follow the flip to {second}")
        assert not _shows(first)

        before = time.time()
        with open_log(settings) as log:
            log.append([Event(event_id="f1", user_id="fresh-user", item_id="i1", event_type="view", timestamp=before)])
        after = time.time()
        with open_store(settings) as store:
            # the consumer writes user states and trending shards side by side: either may be seen first
            _until(lambda: "fresh-user" in store.read_fresh_users(["fresh-user"]), "the event to reach fresh state")
            _until(lambda: _shards(store, "i1"), "the event to reach the trending shards")
            state = store.read_fresh_users(["fresh-user"])["fresh-user"]
            shards = _shards(store, "i1")
        assert before - 0.01 <= state.appended_at <= after + 0.01  # the log's append time, not the event's own
        assert max(t.appended_at for t in shards) == pytest.approx(state.appended_at)
    finally:
        consumer.stop()
        runner.join(timeout=30)
        consumer.close()


def _stage_count(stage: str) -> float:
    return REGISTRY.get_sample_value("lambdarec_speed_stage_seconds_count", {"stage": stage}) or 0.0


def test_each_batch_says_where_its_latency_went(settings: Settings, tmp_path: Path) -> None:
    """Append, poll, computed, written, committed: in that order for every batch, each stage in the metric."""
    _publish(settings, tmp_path, 1)
    before = {stage: _stage_count(stage) for stage in ("append_to_poll", "computed_to_written")}
    batches = []
    start = time.time()
    with open_log(settings) as log:
        log.append([Event(event_id=f"s{k}", user_id=f"u{k % 3}", item_id="i1", event_type="view", timestamp=start)
                    for k in range(6)])  # fmt: skip
    with SpeedConsumer(settings, on_batch=batches.append) as consumer:
        consumer.run(until_idle_s=0.5)
    assert sum(len(b.records) for b in batches) == 6
    for batch in batches:
        appended = min(r.timestamp_ms for r in batch.records) / 1000
        assert start - 0.01 <= appended <= batch.polled_at <= batch.computed_at <= batch.written_at
        assert batch.written_at <= batch.committed_at <= time.time()
    for stage, count in before.items():
        assert _stage_count(stage) == count + len(batches)
