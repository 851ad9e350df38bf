"""The archiver on the SQLite log and on real Kafka: exactly once under SIGKILL, shared partitions, erasure."""

from __future__ import annotations

import json
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from batch_layer.archive import Archiver
from lambdarec.eventlog import open_log
from lambdarec.events import parse_event
from lambdarec.lake import Lake, open_lake
from lambdarec.settings import Settings
from tests.fuzzing import examples
from tests.integration.raw_log import append_raw

T0 = 1_764_400_000.0
KNOWN = {"view", "click", "cart", "purchase", "rating"}


@pytest.fixture(params=["sqlite", "kafka"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s: dict = {
        "lake": {"url": str(tmp_path / "lake")},
        "archive": {"max_batch_events": 100, "max_batch_s": 0.5, "poll_max_records": 100},
    }
    # a SIGKILLed member holds its partitions until its session lapses: keep that short (Kafka's floor is 6 s)
    if request.param == "sqlite":
        s["log"] = {"url": f"sqlite:///{tmp_path}/events", "session_timeout_ms": 1000}
    else:
        host, port = request.getfixturevalue("kafka_endpoint")
        topic = f"archive-{secrets.token_hex(4)}"
        s["log"] = {
            "url": f"kafka://{host}:{port}/{topic}",
            "dead_letter": f"{topic}-dlq",
            "session_timeout_ms": 6000,
            "kafka": {"heartbeat_interval_ms": 1000},
        }
        s["archive"]["consumer_group"] = topic
    return Settings.load(overrides=s)


def make_lines(rng: random.Random, n: int, start: int = 0, bad_share: float = 0.02) -> list[bytes]:
    lines = []
    for i in range(start, start + n):
        if rng.random() < bad_share:
            lines.append(rng.choice([b"{not json", b'{"event_id": "x", "user_id": "u1"}']) + str(i).encode())
            continue
        ev = {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(40)}",
            "item_id": f"i{rng.randrange(60)}",
            "event_type": rng.choice(["view", "click", "purchase"]),
            "timestamp": T0 + i,
        }
        lines.append(json.dumps(ev).encode())
    return lines


def log_records(settings: Settings) -> tuple[dict[tuple[int, int], str], set[tuple[int, int]]]:
    """Every record of the log: valid ones by position -> event_id, and the positions of bad ones."""
    good, bad = {}, set()
    with open_log(settings) as log:
        ends = log.end_offsets()
        with log.consumer(f"check-{secrets.token_hex(4)}") as consumer:
            seen: dict[int, int] = {}
            deadline = time.time() + 60
            while any(seen.get(p, 0) < n for p, n in ends.items()) and time.time() < deadline:
                for r in consumer.poll(1000, timeout_ms=200):
                    seen[r.partition] = max(seen.get(r.partition, 0), r.offset + 1)
                    try:
                        good[(r.partition, r.offset)] = parse_event(
                            r.value, known_types=KNOWN, now=time.time()
                        ).event_id
                    except ValueError:
                        bad.add((r.partition, r.offset))
    return good, bad


def assert_exactly_once(settings: Settings) -> None:
    good, bad = log_records(settings)
    lake = open_lake(settings)
    table = lake.scan().select("log_partition", "log_offset", "event_id").collect()
    positions = list(zip(table["log_partition"].to_list(), table["log_offset"].to_list(), strict=True))
    assert len(positions) == len(set(positions)), "a log record is in the table twice"
    assert set(positions) == set(good), "the table's positions differ from the log's valid records"
    assert sorted(table["event_id"].to_list()) == sorted(good.values())
    dead = lake.dead_letters()
    dead_pos = list(zip(dead["log_partition"].to_list(), dead["log_offset"].to_list(), strict=True))
    assert sorted(dead_pos) == sorted(bad) and all(dead["reason"].str.len_chars() > 0)
    with open_log(settings) as log:
        ends = {p: n for p, n in log.end_offsets().items() if n}
    assert lake.positions() == ends


def config_file(settings: Settings, path: Path) -> Path:
    a = settings.archive
    path.write_text(
        f'[log]\nurl = "{settings.log.url}"\ndead_letter = "{settings.log.dead_letter}"\n'
        f"session_timeout_ms = {settings.log.session_timeout_ms}\n"
        f"[log.kafka]\nheartbeat_interval_ms = {settings.log.kafka.heartbeat_interval_ms}\n"
        f'[lake]\nurl = "{settings.lake.url}"\n'
        f'[archive]\nconsumer_group = "{a.consumer_group}"\nmax_batch_events = {a.max_batch_events}\n'
        f"max_batch_s = {a.max_batch_s}\npoll_max_records = {a.poll_max_records}\n"
    )
    return path


def archive_cli(cfg: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lambdarec", "archive", "run", "--config", str(cfg), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


# Seeded trials: 2 per log in every run (each is three archiver processes, 10-30 s), ten times that under `make
# fuzz`, which runs the tests marked fuzz at LAMBDAREC_TEST_FUZZ_SCALE.
@pytest.mark.fuzz
@pytest.mark.parametrize("trial", range(examples(2)))
def test_sigkill_at_random_instants_leaves_each_record_exactly_once(
    settings: Settings, trial: int, tmp_path: Path
) -> None:
    rng = random.Random(7919 * (trial + 1))  # seeded: a failing trial replays with the same batches and kills
    settings = settings.model_copy(
        update={"archive": settings.archive.model_copy(update={"max_batch_events": rng.choice([20, 50, 100])})}
    )
    cfg = config_file(settings, tmp_path / "archive.toml")
    append_raw(settings, make_lines(rng, 1200))
    lake = open_lake(settings)
    for kill in range(2):
        proc = archive_cli(cfg)
        start_version = lake.version() or 0
        deadline = time.time() + 60
        while (lake.version() or 0) <= start_version and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))  # a random instant: mid-poll, mid-commit, or between commit and offsets
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if kill == 0:
            append_raw(settings, make_lines(rng, 300, start=1200))
    final = archive_cli(cfg, "--until-idle", "1", "--json")
    out, _ = final.communicate(timeout=240)
    assert final.returncode == 0, out
    body = json.loads(out.strip().splitlines()[-1])
    assert set(body) >= {"archived", "dead_lettered", "lake_version", "positions"}
    assert body["lake_version"] == lake.version()
    assert_exactly_once(settings)
    with open_log(settings) as log:
        assert body["positions"] == {str(p): n for p, n in sorted(log.end_offsets().items()) if n}


def test_two_archivers_share_partitions_and_archive_each_record_once(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(5)
    append_raw(settings, make_lines(rng, 3000, bad_share=0.0))
    cfg = config_file(settings, tmp_path / "archive.toml")
    procs = [archive_cli(cfg, "--until-idle", "3", "--json") for _ in range(2)]
    bodies = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
        bodies.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(b["archived"] for b in bodies) == 3000
    assert_exactly_once(settings)


def test_events_of_an_erased_user_not_yet_archived_are_dropped(settings: Settings) -> None:
    before = [json.dumps({"event_id": f"g{i}", "user_id": "gone", "item_id": "i1", "event_type": "view",
                          "timestamp": T0 + i}).encode() for i in range(5)]  # fmt: skip
    others = make_lines(random.Random(3), 50, bad_share=0.0)
    append_raw(settings, before + others)
    lake = open_lake(settings)
    with open_log(settings) as log:
        lake.record_erasure(["gone"], log.end_offsets())
    after = [json.dumps({"event_id": "g-new", "user_id": "gone", "item_id": "i2", "event_type": "view",
                         "timestamp": T0 + 99}).encode()]  # fmt: skip
    append_raw(settings, after)
    with Archiver(settings) as archiver:
        stats = archiver.run(until_idle_s=0.5)
    assert stats.erased == 5
    table = Lake(settings.lake).scan().filter(pl.col("user_id") == "gone").collect()
    assert table["event_id"].to_list() == ["g-new"]  # consent given again after the erasure: kept
