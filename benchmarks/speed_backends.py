"""What the ``speed`` benchmark runs on each backend: a store with a published snapshot, a log filled with events,
the bare poll loops it compares against, the consumer applying them (one, or two in their own processes).

Each (log, store) pair gets its own topic or log directory and consumer group, so no run reads another's
positions. Cassandra comes from ``$LAMBDAREC_TEST_CASSANDRA``, Kafka from ``$LAMBDAREC_TEST_KAFKA`` (or
``deploy/local/services up kafka``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from lambdarec.settings import Settings

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)


def store_url(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/store"
    host = os.environ.get("LAMBDAREC_TEST_CASSANDRA")
    if not host:
        raise SystemExit("speed --store cassandra needs $LAMBDAREC_TEST_CASSANDRA=host:port")
    return f"cassandra://{host}/lambdarec_speed_{secrets.token_hex(4)}"


def log_overrides(kind: str, tmp: Path, name: str, bootstrap: str | None) -> dict:
    if kind == "kafka":
        return {"url": f"kafka://{bootstrap}/{name}", "dead_letter": f"{name}-dlq", "consumer_group": name}
    return {"url": f"sqlite:///{tmp}/log-{name}", "consumer_group": name}


def overrides(store: str, log: dict) -> dict:
    """The settings of one run (plain data, so a consumer process can load the same)."""
    return {"store": {"url": store}, "log": log, "batch": {"train": {"iterations": 5}, "top_k": 50}}


def with_snapshot(store: str, tmp: Path) -> Settings:
    """Settings on ``store`` (SQLite log placeholder), with the schema created and one snapshot published."""
    from batch_layer.job import run_batch
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.store import open_store

    settings = Settings.load(overrides=overrides(store, {"url": f"sqlite:///{tmp}/unused-log"}))
    if store.startswith("cassandra"):
        with open_store(settings) as s:
            s.init_schema()
    path = tmp / "history.parquet"
    if not path.exists():
        synthesize(SynthSpec(users=5_000, items=2_000, events=200_000, seed=1)).events.write_parquet(path)
    run_batch(settings, interactions=str(path), as_of=AS_OF, progress=False)
    return settings


def drop(settings: Settings) -> None:
    """Drop a Cassandra keyspace a run created (the SQLite store goes with its temporary directory)."""
    from lambdarec.store import open_store

    if settings.store.url.startswith("cassandra"):
        with open_store(settings) as s:
            s.drop_schema()


def fill(settings: Settings, lines: list[bytes], partitions: int) -> None:
    from lambdarec.eventlog import open_log

    with open_log(settings) as log:
        log.ensure_topic(partitions)
        log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])


def bare_kafka_rate(bootstrap: str, topic: str, n: int, max_records: int, timeout_s: float = 120.0) -> float:
    """Events/s of a kafka-python consumer polling ``n`` records and doing nothing with them; ``RuntimeError``
    when fewer came within ``timeout_s`` (a benchmark run waited forever here once)."""
    from kafka import KafkaConsumer

    ref = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-bare", enable_auto_commit=False,
                        auto_offset_reset="earliest", max_poll_records=max_records)  # fmt: skip
    try:
        t0, seen, deadline = None, 0, time.monotonic() + timeout_s
        while seen < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare poll of topic {topic!r}: saw {seen} of {n} records in {timeout_s:g} s")
            for batch in ref.poll(timeout_ms=200).values():
                t0 = t0 or time.perf_counter()
                seen += len(batch)
        return n / (time.perf_counter() - (t0 or 0.0))
    finally:
        ref.close()


def bare_log_rate(settings: Settings, n: int) -> float:
    """Events/s of the port's own consumer on the embedded log, polling and committing, nothing applied."""
    from lambdarec.eventlog import open_log
    from lambdarec.eventlog.base import next_positions

    with open_log(settings) as log, log.consumer(f"{settings.log.consumer_group}-bare") as consumer:
        t0, seen = time.perf_counter(), 0
        while seen < n:
            records = consumer.poll(settings.speed.poll_max_records, timeout_ms=200)
            seen += len(records)
            consumer.commit(next_positions(records))
        return n / (time.perf_counter() - t0)


def apply_rate(settings: Settings, n: int) -> tuple[float, float]:
    """(events/s, CPU seconds per 1,000 events) of one speed consumer applying ``n`` events, running as it does
    in production (pipelined), from its first batch to its last commit."""
    from speed_layer.consumer import SpeedConsumer

    marks: list[float] = []
    with SpeedConsumer(settings, observer=lambda recs, at: marks.append(at)) as consumer:
        cpu = time.process_time()
        while consumer.stats.processed < n:
            consumer.cycle(draining=True)
        consumer.settle()
        cpu = time.process_time() - cpu
    rate = n / (marks[-1] - marks[0]) if len(marks) > 1 else float("nan")
    return rate, cpu / n * 1e6  # CPU ms per 1,000 events


def _member(run: dict, partitions: int, ready: multiprocessing.Queue, done: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from lambdarec.logs import configure_logging
    from speed_layer.consumer import SpeedConsumer

    configure_logging("WARNING")
    first = None
    with SpeedConsumer(Settings.load(overrides=run)) as consumer:
        while len(consumer.consumer.assignment()) != partitions:  # until the group has settled on its members
            consumer.cycle(draining=True)
        ready.put(True)
        deadline = time.time() + 300
        while time.time() < deadline:
            if consumer.cycle(draining=True):
                first = first or time.time()
            elif first is not None and consumer.drained():  # the whole group is done, not only this member
                break
        consumer.settle()
        done.put((first, time.time(), consumer.stats.processed))


def group_rate(run: dict, lines: list[bytes], members: int, partitions: int = 2) -> float:
    """Events/s of ``members`` speed consumers, each in its own process, sharing one group on a log of
    ``partitions``: the log is filled once every member holds its share, then timed from the first batch any of
    them applied to the moment the last saw the whole log committed."""
    settings = Settings.load(overrides=run)
    from lambdarec.eventlog import open_log

    with open_log(settings) as log:
        log.ensure_topic(partitions)
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Queue()
    share = partitions // members
    procs = [ctx.Process(target=_member, args=(run, share, ready, done)) for _ in range(members)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    fill(settings, lines, partitions)
    results = [done.get(timeout=360) for _ in procs]
    for p in procs:
        p.join()
    processed = sum(r[2] for r in results)
    if processed != len(lines):
        raise RuntimeError(f"{members} consumers applied {processed} events, expected {len(lines)}")
    return len(lines) / (max(r[1] for r in results) - min(r[0] for r in results if r[0] is not None))
