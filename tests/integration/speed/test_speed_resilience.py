"""The speed consumer waits out a store or log that stops answering, and resumes by itself with exact state.

Before: the first ``StoreUnavailableError`` (or a commit that timed out on a dead broker) ended ``speed run``.
Here the real SQLite store and log are wrapped so that their calls fail for a while, at chosen points of the
cycle (reading state, writing trending, committing); the state after recovery must equal one clean pass (no
event lost, none counted twice) and nothing may be committed past what was written. The same on real Kafka and
Cassandra, killed for real, is in ``tests/chaos``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lambdarec.eventlog import open_log
from lambdarec.eventlog.base import EventLogUnavailableError
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import StoreUnavailableError, open_store
from speed_layer.consumer import SpeedConsumer
from tests.integration.outage import Fault, methods_id, run_through_outage
from tests.integration.raw_log import append_raw
from tests.integration.serve_process import free_port
from tests.integration.speed.test_speed import T0, assert_state_matches, make_events, publish, reference


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "speed": {"poll_max_records": 200, "retry_initial_s": 0.05, "retry_max_s": 0.4},
            "batch": {"top_k": 50, "train": {"iterations": 5}},
        }
    )


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from batch_layer.synth import SynthSpec, synthesize

    path = tmp_path_factory.mktemp("speed-resilience") / "log.parquet"
    synthesize(SynthSpec(users=400, items=300, events=20_000, seed=3)).events.write_parquet(path)
    return path


@pytest.mark.parametrize(
    "methods", [{"read_fresh_users"}, {"write_trending"}, {"current_version", "read_trending"}], ids=methods_id
)
def test_a_store_outage_is_waited_out_with_exact_state(settings: Settings, log_file: Path, methods: set[str]) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, bad = make_events(4_000, T0 + 60, seed=11)
    append_raw(settings, lines)
    with open_store(settings) as real:
        store = Fault(real, methods, StoreUnavailableError)
        with SpeedConsumer(settings, store=store) as consumer:  # type: ignore[arg-type]
            seen = run_through_outage(consumer, store, lambda: consumer.stats.batches >= 3, 1.5)
            committed = consumer.consumer.committed()
        assert store.failures >= 2, "the outage was retried"
        assert any(h["waiting_for"] == "store" and not h["ready"] for h in seen), seen
        assert consumer.health.to_json() == {"ready": True, "waiting_for": None}
        with open_log(settings) as log:
            assert committed == log.end_offsets()
        model = SnapshotModel.load(real, real.current_version(max_age_s=0))
        assert_state_matches(real, *reference(settings, lines, model, real))
    assert consumer.stats.processed >= len(lines) - len(bad)


def test_a_log_outage_at_commit_never_commits_past_what_was_written(settings: Settings, log_file: Path) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, _ = make_events(4_000, T0 + 60, seed=12)
    append_raw(settings, lines)
    with open_store(settings) as real, SpeedConsumer(settings, store=real) as consumer:
        consumer.consumer = log = Fault(consumer.consumer, {"commit", "poll"}, EventLogUnavailableError)
        seen = run_through_outage(consumer, log, lambda: consumer.stats.batches >= 2, 1.5)
        assert log.failures >= 2
        assert any(h["waiting_for"] == "log" for h in seen), seen
        with open_log(settings) as opened:
            assert consumer.consumer.committed() == opened.end_offsets()
        model = SnapshotModel.load(real, real.current_version(max_age_s=0))
        assert_state_matches(real, *reference(settings, lines, model, real))


def test_give_up_after_s_bounds_the_wait(settings: Settings, log_file: Path) -> None:
    settings = settings.model_copy(deep=True)
    settings.speed.give_up_after_s = 0.5
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    append_raw(settings, make_events(500, T0 + 60, seed=13)[0])
    with open_store(settings) as real:
        store = Fault(real, {"read_fresh_users"}, StoreUnavailableError)
        store.down.set()
        with SpeedConsumer(settings, store=store) as consumer:  # type: ignore[arg-type]
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError, match="test outage"):
                consumer.run(until_idle_s=1.0)
            assert 0.5 <= time.monotonic() - started < 10


def test_speed_run_waits_for_a_store_that_is_not_there_and_says_so(tmp_path: Path) -> None:
    """``speed run`` used to exit at once when the store did not answer; now /readyz says what it waits for."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port, dead = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAREC_")}
    env |= {"LAMBDAREC_SPEED__RETRY_MAX_S": "0.5", "LAMBDAREC_STORE__CASSANDRA__CONNECT_TIMEOUT_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdarec", "speed", "run", "--metrics-port", str(port),
         "--store", f"cassandra://127.0.0.1:{dead}/nowhere", "--log", f"sqlite:///{tmp_path}/events"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        body, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except urllib.error.HTTPError as exc:
                body = json.loads(exc.read())
                if body.get("waiting_for") == "store" and body.get("retries", 0) >= 2:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert body is not None and body["waiting_for"] == "store" and not body["ready"], body
        assert str(dead) in body["error"]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert 'lambdarec_speed_waiting{dependency="store"} 1.0' in metrics
        assert proc.poll() is None, "speed run must keep waiting, not exit"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
