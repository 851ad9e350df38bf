"""``speed``: events/s the speed layer applies vs a bare poll loop on the same log, the p99 time from an event
being appended to its state being written (visible to serving), on each store and log asked for.

Ours = parse, validate, claim event ids, fold-in against a published snapshot, write fresh state and trending in
bulk, commit, pipelined as ``lambdarec speed run`` runs it. Reference = a bare poll loop on the same records:
kafka-python's ``KafkaConsumer`` for Kafka, the port's own consumer (poll + commit) for the embedded log.
``--store sqlite,cassandra`` / ``--log kafka,sqlite`` pick the backends (default: every one this machine has);
with both stores it also reports Cassandra state against SQLite state, and ``--members`` 2 consumers (one process
each) on 2 partitions against 1, for events/s and for freshness (:mod:`benchmarks.speed_group`), on each store.
Kafka comes from ``$LAMBDAREC_TEST_KAFKA`` or ``deploy/local/services up kafka``; Cassandra from
``$LAMBDAREC_TEST_CASSANDRA``. Goals: events/s >= 0.5x the bare loop, freshness p99 <= 250 ms at the rate, and
Cassandra state >= 0.5x SQLite state.
"""

from __future__ import annotations

import json
import multiprocessing
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

from benchmarks.common import Goal, Result, Scale

GOAL_RATE_RATIO, GOAL_FRESH_P99_MS, GOAL_CASSANDRA_RATIO = 0.5, 250.0, 0.5
SIZES = {"small": (20_000, 2_000), "medium": (200_000, 5_000), "large": (1_000_000, 10_000)}  # events, rate/s
ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    stores = "sqlite,cassandra" if os.environ.get("LAMBDAREC_TEST_CASSANDRA") else "sqlite"
    parser.add_argument("--freshness-seconds", type=float, default=5.0, help="length of the steady-rate phase")
    parser.add_argument("--freshness-rate", type=int, default=0, help="events/s of the steady phase (0: the scale's)")
    parser.add_argument("--producer", choices=("thread", "process"), default="thread",
                        help="the steady phase's producer: its own process or a thread of the consumer's")  # fmt: skip
    parser.add_argument("--store", default=stores, help=f"stores, comma-separated (default here: {stores})")
    parser.add_argument("--log", default="kafka,sqlite", help="logs, comma-separated (default: kafka,sqlite)")
    parser.add_argument("--members", type=int, default=2, help="consumers on as many partitions vs 1 (0: skip)")


def kafka_bootstrap() -> str:
    """The Kafka to measure on: `$LAMBDAREC_TEST_KAFKA`, else `deploy/local/services up kafka`."""
    if os.environ.get("LAMBDAREC_TEST_KAFKA"):
        return os.environ["LAMBDAREC_TEST_KAFKA"]
    out = subprocess.run(
        [str(ROOT / "deploy/local/services"), "up", "kafka"], capture_output=True, text=True, check=True
    )
    line = next(x for x in out.stdout.splitlines() if "LAMBDAREC_TEST_KAFKA=" in x)
    return line.split("=", 1)[1].strip()


def event_lines(n: int, users: int, items: int, start: float, seed: int, ids: str = "b") -> list[bytes]:
    """`n` JSON events on the wire, Zipf-popular items, one every 10 ms of event time from `start`; their event ids
    are ``ids`` and a number. Give every stream its own ``ids``: a store already holding an id skips the event as a
    repeat (``events.dedup_window_s``), and the benchmark would time skipping instead of applying."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    i = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
    types = np.array(["view", "view", "click", "cart", "purchase"])[rng.integers(0, 5, n)]
    return [
        json.dumps(
            {
                "event_id": f"{ids}{k}",
                "user_id": f"u{u[k]}",
                "item_id": f"i{i[k]}",
                "event_type": str(types[k]),
                "timestamp": start + k * 0.01,
            }
        ).encode()
        for k in range(n)
    ]


def dedup_in(settings) -> str:  # type: ignore[no-untyped-def]
    """Where the consumer looked repeats up (``events.dedup``; ``auto`` resolved as the store's mark says)."""
    from lambdarec.store import open_store

    events = settings.events
    if events.dedup_window_s <= 0:
        return "nowhere (dedup_window_s = 0)"
    if events.dedup != "auto":
        return str(events.dedup)
    with open_store(settings) as store:
        return "state" if time.time() >= store.state_dedup_from(events.dedup_window_s) else "store"


STAGES = ("append_to_poll", "poll_to_computed", "computed_to_written", "written_to_committed")


def produce(settings, stream: list[bytes], rate: int) -> None:  # type: ignore[no-untyped-def]
    """Append ``stream`` to the log at ``rate`` events/s, 50 appends a second."""
    from lambdarec.eventlog import open_log

    with open_log(settings) as log:
        per_tick = max(1, rate // 50)
        t_next = time.perf_counter()
        for k in range(0, len(stream), per_tick):
            chunk = stream[k : k + per_tick]
            log.append(chunk, keys=[json.loads(x)["user_id"] for x in chunk])
            t_next += per_tick / rate
            time.sleep(max(0.0, t_next - time.perf_counter()))


def freshness(settings, stream: list[bytes], rate: int, producer: str = "thread") -> tuple[list[float], int, str]:  # type: ignore[no-untyped-def]
    """Append ``stream`` at ``rate`` events/s while a consumer runs: seconds from append to state written, how
    many of the events were applied (not skipped as repeats), and where their latency went (p50/p99 per stage,
    over events, and the batches' sizes). ``producer``: ``thread`` appends from this process, sharing the consumer's
    interpreter; ``process`` from a process of its own, as producers run (measured no better on a loaded 2-core
    box: the spawned interpreter's start and the extra process cost the consumer CPU)."""
    from speed_layer.consumer import SpeedConsumer

    latencies: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    sizes: list[int] = []

    def observe(batch) -> None:  # type: ignore[no-untyped-def]
        records = batch.polled or batch.records
        latencies.extend(batch.written_at - r.timestamp_ms / 1000 for r in records)
        stages["append_to_poll"].extend(batch.polled_at - r.timestamp_ms / 1000 for r in records)
        for stage, start, end in zip(STAGES[1:], ("polled_at", "computed_at", "written_at"),
                                     ("computed_at", "written_at", "committed_at"), strict=True):  # fmt: skip
            stages[stage].extend([getattr(batch, end) - getattr(batch, start)] * len(records))
        sizes.append(len(records))

    with SpeedConsumer(settings, on_batch=observe) as consumer:
        consumer.step()
        runner = threading.Thread(target=consumer.run)
        runner.start()
        if producer == "process":  # apart from the consumer (and its GIL), as producers run
            proc = multiprocessing.get_context("spawn").Process(target=produce, args=(settings, stream, rate))
            proc.start()
            proc.join()
        else:
            produce(settings, stream, rate)
        deadline = time.time() + 30
        while len(latencies) < len(stream) and time.time() < deadline:
            time.sleep(0.05)
        consumer.stop()
        runner.join()
    where = "; ".join(
        f"{stage} p50 {np.percentile(v, 50) * 1000:.0f} p99 {np.percentile(v, 99) * 1000:.0f} ms"
        for stage, v in stages.items()
        if v
    )
    if sizes:
        where += f"; {len(sizes)} batches of {np.mean(sizes):.0f} records on average, at most {max(sizes)}"
    return latencies, consumer.stats.processed, where


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from benchmarks import speed_backends as sb
    from lambdarec.logs import configure_logging
    from lambdarec.settings import Settings

    configure_logging("WARNING")
    n, rate = SIZES[scale]
    rate = args.freshness_rate or rate
    stores, logs = args.store.split(","), args.log.split(",")
    bootstrap = kafka_bootstrap() if "kafka" in logs else None
    start = datetime(2024, 2, 1, tzinfo=UTC).timestamp() + 60
    rates: dict[tuple[str, str], float] = {}
    made: list[Settings] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            yield from _runs(stores, logs, n, tmp, bootstrap, scale, rate, start, args, rates, made)
        finally:
            for settings in made:
                sb.drop(settings)


def _runs(stores, logs, n, tmp, bootstrap, scale, rate, start, args, rates, made) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from benchmarks import speed_backends as sb
    from lambdarec.settings import Settings

    for store_kind in stores:
        base = sb.with_snapshot(sb.store_url(store_kind, tmp / store_kind), tmp)
        made.append(base)
        for log_kind in logs:
            tag = secrets.token_hex(4)
            name = f"bench-speed-{tag}"
            lines = event_lines(n, 6_000, 2_100, start, 2, ids=f"{tag}b")
            run_cfg = sb.overrides(base.store.url, sb.log_overrides(log_kind, tmp, name, bootstrap))
            settings = Settings.load(overrides=run_cfg)
            sb.fill(settings, lines, 3)
            if log_kind == "kafka":
                ref = sb.bare_kafka_rate(bootstrap, name, n, settings.speed.poll_max_records)  # type: ignore[arg-type]
            else:
                ref = sb.bare_log_rate(settings, n)
            ours, cpu_ms = sb.apply_rate(settings, n)
            rates[log_kind, store_kind] = ours
            where = f"{log_kind} log, {store_kind} store"
            yield Result("speed", f"events_per_s_applied[{log_kind},{store_kind}]", ours, ref, "events/s", scale,
                         note=f"{n} events, 3 partitions, {where}; repeats looked up in the {dedup_in(settings)} "
                         f"(events.dedup {settings.events.dedup}); ours {cpu_ms:.0f} ms CPU per 1,000 events; "
                         f"load average {os.getloadavg()[0]:.1f}", goal=Goal(ratio=GOAL_RATE_RATIO))  # fmt: skip
            steady = event_lines(int(rate * args.freshness_seconds), 6_000, 2_100, start + n, 3, ids=f"{tag}f")
            cpu0 = time.process_time()
            latencies, applied, stages = freshness(settings, steady, rate, args.producer)
            cpu_s = time.process_time() - cpu0
            p99 = float(np.percentile(latencies, 99)) * 1000 if latencies else float("nan")
            yield Result("speed", f"freshness_p99_ms[{log_kind},{store_kind}]", p99, GOAL_FRESH_P99_MS, "ms",
                         scale, higher_is_better=False, goal=Goal(at_most=GOAL_FRESH_P99_MS),
                         note=f"reference is the 250 ms goal; {len(latencies)} events at {rate}/s ({applied} "
                         f"applied, the rest skipped as repeats), {where}, repeats looked up in the "
                         f"{dedup_in(settings)}; "
                         f"p50 {np.percentile(latencies, 50) * 1000:.1f} ms; {stages}; producer: {args.producer}; "
                         f"{cpu_s:.1f} CPU s in the consumer's process; "
                         f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for log_kind in logs:
        if ("cassandra" in stores) and ("sqlite" in stores):
            yield Result("speed", f"cassandra_vs_sqlite_state[{log_kind}]", rates[log_kind, "cassandra"],
                         rates[log_kind, "sqlite"], "events/s", scale,
                         note="events/s applied with Cassandra state vs with SQLite state, same log",
                         goal=Goal(ratio=GOAL_CASSANDRA_RATIO))  # fmt: skip
    if args.members > 1:
        for store_kind in stores:
            yield from _members(args.members, store_kind, logs[0], n, start, tmp, bootstrap, scale, made)
            yield from _group_freshness(args, store_kind, logs[0], rate, start + 2 * n, tmp, bootstrap, scale, made)


def _group_freshness(args, store_kind, log_kind, rate, start, tmp, bootstrap, scale, made) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    """Freshness p99 with ``--members`` consumer processes on as many partitions, against one consumer process."""
    from benchmarks import speed_backends as sb
    from benchmarks.speed_group import group_freshness

    members = args.members
    settings = sb.with_snapshot(sb.store_url(store_kind, tmp / f"{store_kind}-fresh-members"), tmp)
    made.append(settings)
    p99: dict[int, float] = {}
    for count in (1, members):
        tag = secrets.token_hex(4)
        run_cfg = sb.overrides(settings.store.url, sb.log_overrides(log_kind, tmp, f"bench-fresh-{tag}", bootstrap))
        stream = event_lines(int(rate * args.freshness_seconds), 6_000, 2_100, start, 3, ids=f"{tag}g")
        p99[count] = float(np.percentile(group_freshness(run_cfg, stream, rate, count, members), 99)) * 1000
    yield Result("speed", f"freshness_p99_ms_{members}_consumers[{log_kind},{store_kind}]", p99[members],
                 GOAL_FRESH_P99_MS, "ms", scale, higher_is_better=False, goal=Goal(at_most=GOAL_FRESH_P99_MS),
                 note=f"reference is the 250 ms goal; {members} consumer processes on {members} partitions at "
                 f"{rate} events/s; 1 consumer process on the same log: p99 {p99[1]:.0f} ms; producer: process; "
                 f"{os.cpu_count()} cores shared with the services; load average {os.getloadavg()[0]:.1f}")  # fmt: skip


def _members(
    members: int, store_kind: str, log_kind: str, n: int, start: float, tmp: Path, bootstrap, scale, made
) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from benchmarks import speed_backends as sb

    base = sb.store_url(store_kind, tmp / f"{store_kind}-members")
    settings = sb.with_snapshot(base, tmp)
    made.append(settings)
    measured = {}
    for count in (1, members):
        tag = secrets.token_hex(4)
        name = f"bench-speed-members-{tag}"
        lines = event_lines(n, 6_000, 2_100, start, 2, ids=f"{tag}b")  # one store: the second run's ids differ
        run_cfg = sb.overrides(settings.store.url, sb.log_overrides(log_kind, tmp, name, bootstrap))
        measured[count] = sb.group_rate(run_cfg, lines, count, partitions=members)
    yield Result("speed", f"events_per_s_{members}_consumers_vs_1[{log_kind},{store_kind}]", measured[members],
                 measured[1], "events/s", scale,
                 note=f"{members} consumer processes on {members} partitions vs 1 consumer on the same "
                 f"{members}-partition log; {os.cpu_count()} cores shared with the services")  # fmt: skip
