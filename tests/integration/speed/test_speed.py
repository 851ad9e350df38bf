"""The speed layer on real backends: exact state under bad events, SIGKILL, a snapshot flip, two consumers.

Every test runs twice: SQLite store + SQLite log (embedded), and Cassandra store + Kafka log (real servers).
The reference is the same events applied in-process, in log order, with the same pure state functions.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.eventlog import open_log
from lambdarec.events import BadEvent, EventRules
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.trending import decayed, total_counts
from lambdarec.settings import Settings
from lambdarec.store import open_store
from speed_layer.consumer import SpeedConsumer
from speed_layer.state import apply_trending, apply_user_events
from tests.integration.raw_log import append_raw
from tests.integration.speed.backends import backend_settings

T0 = datetime(2024, 2, 1, tzinfo=UTC).timestamp()  # the first snapshot's cut-off


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("speed") / "log.parquet"
    synthesize(SynthSpec(users=400, items=300, events=30_000, seed=3)).events.write_parquet(path)
    return path


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = {"speed": {"poll_max_records": 250}, "batch": {"top_k": 50, "train": {"iterations": 5}, "lock_ttl_s": 5}}
    return backend_settings(request, tmp_path, s, "speed")


def publish(settings: Settings, log_file: Path, as_of: datetime) -> str:
    result = run_batch(settings, interactions=str(log_file), as_of=as_of, force=True, progress=False)
    return result.manifest["version"]


def make_events(n: int, start: float, seed: int, bad_share: float = 0.01) -> tuple[list[bytes], set[bytes]]:
    """Events for known and unknown users and items, with ``bad_share`` malformed ones of every kind."""
    rng = random.Random(seed)
    lines, bad = [], set()
    kinds = ["not json", "missing", "unknown type", "future", "negative"]
    for i in range(n):
        if rng.random() < bad_share:
            kind = kinds[len(bad) % len(kinds)]
            raw = {
                "not json": f"{{oops {i}",
                "missing": json.dumps({"event_id": f"b{i}", "user_id": "u1"}),
                "unknown type": json.dumps(
                    {
                        "event_id": f"b{i}",
                        "user_id": "u1",
                        "item_id": "i1",
                        "event_type": "teleport",
                        "timestamp": start,
                    }
                ),
                "future": json.dumps(
                    {
                        "event_id": f"b{i}",
                        "user_id": "u1",
                        "item_id": "i1",
                        "event_type": "view",
                        "timestamp": time.time() + 10 * 86400,
                    }
                ),
                "negative": json.dumps(
                    {
                        "event_id": f"b{i}",
                        "user_id": "u1",
                        "item_id": "i1",
                        "event_type": "view",
                        "timestamp": start,
                        "weight": -1,
                    }
                ),
            }[kind].encode()
            bad.add(raw)
        else:
            user = f"u{rng.randrange(450)}"  # u400.. are new to the snapshot
            item = f"i{rng.randrange(320)}"  # i300.. are new items
            etype = rng.choice(["view", "view", "click", "cart", "purchase"])
            raw = json.dumps(
                {
                    "event_id": f"e{seed}-{i}",
                    "user_id": user,
                    "item_id": item,
                    "event_type": etype,
                    "timestamp": start + i,
                }
            ).encode()
        lines.append(raw)
    return lines, bad


def reference(settings: Settings, lines: list[bytes], model: SnapshotModel, store) -> tuple[dict, dict]:
    rules = EventRules.from_settings(settings)
    by_user, by_item = defaultdict(list), defaultdict(list)
    for n, raw in enumerate(lines):
        try:
            ev = rules.parse(raw)
        except BadEvent:
            continue
        by_user[ev.user_id].append((ev, (0, n)))
        by_item[ev.item_id].append((ev, (0, n)))
    history = store.read_users(model.version, by_user)
    users = {
        u: apply_user_events(None, evs, model, history.get(u), settings=settings.speed) for u, evs in by_user.items()
    }
    items = {
        i: apply_trending(None, evs, model.event_weights, settings.speed.trending_half_life_s)
        for i, evs in by_item.items()
    }
    return users, items


def assert_vectors(have: list[float] | None, want: list[float] | None) -> None:
    """Equal within float tolerance; None (no item known to the snapshot) only equals None."""
    assert (have is None) == (want is None)
    if want is not None:
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-5)


def assert_state_matches(store, users: dict, items: dict) -> None:
    got = store.read_fresh_users(users)
    assert set(got) == set(users)
    for user_id, want in users.items():
        have = got[user_id]
        assert have.events == want.events, user_id
        assert have.recent == want.recent, user_id
        assert have.basis == want.basis
        assert_vectors(have.vector, want.vector)
    now = max(t.as_of for t in items.values())
    have = total_counts(store.read_trending(None), now, 21600)
    assert set(have) == set(items)
    for item_id, want in items.items():
        assert have[item_id] == pytest.approx(decayed(want.count, want.as_of, now, 21600), rel=1e-9), item_id


def drain(settings: Settings) -> dict:
    with SpeedConsumer(settings) as c:
        return c.run(until_idle_s=3.0).to_json()


def test_bad_events_go_to_dead_letters_and_state_equals_reference(settings: Settings, log_file: Path) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, bad = make_events(10_000, T0 + 60, seed=1)
    append_raw(settings, lines)
    stats = drain(settings)
    assert stats["processed"] == len(lines) - len(bad)
    assert stats["dead_lettered"] == len(bad)
    with open_store(settings) as store, open_log(settings) as log:
        dead = log.read_dead_letters(limit=10_000)
        assert sorted(d.value for d in dead) == sorted(bad)
        assert all(d.reason for d in dead)
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        assert_state_matches(store, *reference(settings, lines, model, store))


@pytest.mark.slow
def test_sigkill_and_restart_equals_one_clean_pass(settings: Settings, log_file: Path, tmp_path: Path) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, _ = make_events(6_000, T0 + 60, seed=2)
    append_raw(settings, lines)
    cfg = tmp_path / "speed.toml"
    cfg.write_text(
        f'[store]\nurl = "{settings.store.url}"\n[log]\nurl = "{settings.log.url}"\n'
        f'dead_letter = "{settings.log.dead_letter}"\nconsumer_group = "{settings.log.consumer_group}"\n'
        "[speed]\npoll_max_records = 100\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdarec", "speed", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open_store(settings) as store:
        deadline = time.time() + 120
        while not store.read_fresh_users([f"u{i}" for i in range(450)]) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(random.Random(os.getpid()).uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        drain(settings)
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        assert_state_matches(store, *reference(settings, lines, model, store))


def test_snapshot_published_mid_stream_rebases_vectors(settings: Settings, log_file: Path) -> None:
    first = publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    early, _ = make_events(1_000, T0 + 60, seed=3, bad_share=0)
    append_raw(settings, early)
    drain(settings)
    second = publish(settings, log_file, datetime.fromtimestamp(T0 + 60 + 500, UTC))  # cut-off inside `early`
    assert second != first
    late, _ = make_events(1_000, T0 + 5_000, seed=4, bad_share=0)
    append_raw(settings, late)
    drain(settings)
    with open_store(settings) as store:
        model = SnapshotModel.load(store, second)
        late_users = {json.loads(raw)["user_id"] for raw in late}
        states = store.read_fresh_users(late_users)
        assert {s.basis for s in states.values()} == {second}
        # The second snapshot was built from a file holding none of the logged events (its manifest has no
        # log_positions): whatever their event time, every one stays in fresh state, none is lost at the flip.
        per_user: dict[str, int] = {}
        for raw in early + late:
            user = json.loads(raw)["user_id"]
            per_user[user] = per_user.get(user, 0) + 1
        for user_id, state in states.items():
            assert len(state.events) == per_user[user_id]
            assert len(state.event_positions) == len(state.events)
        users, _ = reference(settings, early + late, model, store)
        for user_id in late_users:
            assert_vectors(states[user_id].vector, users[user_id].vector)


def test_two_consumers_in_one_group_share_partitions(settings: Settings, log_file: Path) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    with open_log(settings) as log:
        log.ensure_topic()
    consumers = [SpeedConsumer(settings), SpeedConsumer(settings)]
    try:
        # Both members join and split the three partitions before any event arrives.
        deadline = time.time() + 60
        while time.time() < deadline and not all(c.consumer.assignment() for c in consumers):
            for c in consumers:
                c.step()
        assignments = [c.consumer.assignment() for c in consumers]
        assert all(assignments) and not assignments[0] & assignments[1], assignments
        lines, bad = make_events(6_000, T0 + 60, seed=5)
        append_raw(settings, lines)
        threads = [threading.Thread(target=c.run, kwargs={"until_idle_s": 3.0}) for c in consumers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        stats = [c.stats.to_json() for c in consumers]
    finally:
        for c in consumers:
            c.close()
    assert sum(s["processed"] for s in stats) == len(lines) - len(bad)
    assert all(s["processed"] > 0 for s in stats), stats
    with open_store(settings) as store:
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        assert_state_matches(store, *reference(settings, lines, model, store))
