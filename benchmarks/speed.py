"""``speed``: events/s the speed layer applies from Kafka vs a bare kafka-python poll loop on the same topic,
and the p99 time from an event being appended to its state being written (visible to serving).

Ours = parse, validate, fold-in against a published snapshot, write fresh state and trending in bulk, commit.
Reference = a kafka-python ``KafkaConsumer`` polling the same records and doing nothing with them.
Kafka comes from ``$LAMBDAREC_TEST_KAFKA`` or ``deploy/local/services up kafka``; the store is SQLite.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Result, Scale

SIZES = {"small": (20_000, 2_000), "medium": (200_000, 5_000), "large": (1_000_000, 10_000)}  # events, rate/s
ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--freshness-seconds", type=float, default=8.0, help="length of the steady-rate phase")


def kafka_bootstrap() -> str:
    """The Kafka to measure on: `$LAMBDAREC_TEST_KAFKA`, else `deploy/local/services up kafka`."""
    if os.environ.get("LAMBDAREC_TEST_KAFKA"):
        return os.environ["LAMBDAREC_TEST_KAFKA"]
    out = subprocess.run(
        [str(ROOT / "deploy/local/services"), "up", "kafka"], capture_output=True, text=True, check=True
    )
    line = next(x for x in out.stdout.splitlines() if "LAMBDAREC_TEST_KAFKA=" in x)
    return line.split("=", 1)[1].strip()


def event_lines(n: int, users: int, items: int, start: float, seed: int) -> list[bytes]:
    """`n` JSON events on the wire, Zipf-popular items, one every 10 ms of event time from `start`."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    i = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
    types = np.array(["view", "view", "click", "cart", "purchase"])[rng.integers(0, 5, n)]
    return [
        json.dumps(
            {
                "event_id": f"b{k}",
                "user_id": f"u{u[k]}",
                "item_id": f"i{i[k]}",
                "event_type": str(types[k]),
                "timestamp": start + k * 0.01,
            }
        ).encode()
        for k in range(n)
    ]


def _freshness(settings, stream: list[bytes], rate: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Append ``stream`` at ``rate`` events/s while a consumer runs; seconds from append to state written."""
    from lambdarec.eventlog import open_log
    from speed_layer.consumer import SpeedConsumer

    latencies: list[float] = []

    def observe(records, written_at: float) -> None:  # type: ignore[no-untyped-def]
        latencies.extend(written_at - r.timestamp_ms / 1000 for r in records)

    with SpeedConsumer(settings, observer=observe) as consumer, open_log(settings) as log:
        consumer.step()
        runner = threading.Thread(target=consumer.run)
        runner.start()
        per_tick = max(1, rate // 50)
        t_next = time.perf_counter()
        for k in range(0, len(stream), per_tick):
            chunk = stream[k : k + per_tick]
            log.append(chunk, keys=[json.loads(x)["user_id"] for x in chunk])
            t_next += per_tick / rate
            time.sleep(max(0.0, t_next - time.perf_counter()))
        deadline = time.time() + 30
        while len(latencies) < len(stream) and time.time() < deadline:
            time.sleep(0.05)
        consumer.stop()
        runner.join()
    return latencies


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer

    from batch_layer.job import run_batch
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.eventlog import open_log
    from lambdarec.logs import configure_logging
    from lambdarec.settings import Settings
    from speed_layer.consumer import SpeedConsumer

    configure_logging("WARNING")
    n, rate = SIZES[scale]
    bootstrap = kafka_bootstrap()
    topic = f"bench-speed-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(
            overrides={
                "store": {"url": f"sqlite:///{tmp}/store"},
                "log": {"url": f"kafka://{bootstrap}/{topic}", "dead_letter": f"{topic}-dlq", "consumer_group": topic},
                "batch": {"train": {"iterations": 5}, "top_k": 50},
            }
        )
        log_path = Path(tmp) / "log.parquet"
        synthesize(SynthSpec(users=5_000, items=2_000, events=200_000, seed=1)).events.write_parquet(log_path)
        run_batch(settings, interactions=str(log_path), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False)
        start = datetime(2024, 2, 1, tzinfo=UTC).timestamp() + 60
        lines = event_lines(n, 6_000, 2_100, start, seed=2)
        with open_log(settings) as log:
            log.ensure_topic(3)
            log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])

        # Reference: a bare poll loop over the same records.
        ref = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"{topic}-bare",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.speed.poll_max_records,
        )
        t0, seen = None, 0
        while seen < n:
            for batch in ref.poll(timeout_ms=200).values():
                t0 = t0 or time.perf_counter()
                seen += len(batch)
        ref_rate = n / (time.perf_counter() - t0)
        ref.close()

        # Ours: the speed layer applying the same records, timed from its first batch to the last commit.
        marks: list[float] = []
        with SpeedConsumer(settings, observer=lambda recs, at: marks.append(at)) as consumer:
            while consumer.stats.processed < n:
                consumer.step()
        ours_rate = n / (marks[-1] - marks[0]) if len(marks) > 1 else float("nan")
        yield Result(
            "speed",
            "events_per_s_applied",
            ours_rate,
            ref_rate,
            "events/s",
            scale,
            note=f"{n} events, 3 partitions, SQLite store, poll_max_records {settings.speed.poll_max_records}",
        )

        # Freshness: a steady stream at `rate`/s while the consumer runs; append time -> state written.
        steady = event_lines(int(rate * args.freshness_seconds), 6_000, 2_100, start + n, 3)
        latencies = _freshness(settings, steady, rate)
        p99 = float(np.percentile(latencies, 99)) * 1000 if latencies else float("nan")
        yield Result(
            "speed",
            "freshness_p99_ms",
            p99,
            250.0,
            "ms",
            scale,
            higher_is_better=False,
            note=f"reference is the 250 ms goal; {len(latencies)} events at {rate}/s; "
            f"p50 {np.percentile(latencies, 50) * 1000:.1f} ms",
        )
