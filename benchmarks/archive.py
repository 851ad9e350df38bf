"""``archive``: the archiver's events/s from Kafka into the lake, and the nightly's read of the lake.

1. Ours = ``lambdarec archive run`` (poll, validate, build rows, one Delta commit per micro-batch carrying the log
   positions it covers, commit the group). Reference = a bare kafka-python consumer in its own group polling the
   same topic in batches of the same size, ``json.loads`` per record and ``write_deltalake`` of each batch (no
   validation, no positions, no exactly-once). Both join a consumer group, so both pay for the join. Goal >= 0.7x.
2. Ours = the batch job's read of one pinned lake version (``read_lake``: scan, erasures, weights, dedup, window).
   Reference = the batch job's read of the same rows from one parquet file (``read_interactions``). Goal >= 0.8x.

Kafka comes from ``$LAMBDAREC_TEST_KAFKA`` or ``deploy/local/services up kafka``; the lake is a local directory.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Goal, Result, Scale, best_of
from benchmarks.speed import event_lines, kafka_bootstrap

SIZES = {"small": 20_000, "medium": 200_000, "large": 1_000_000}
BATCH = 5_000  # records per micro-batch, ours and the reference's


def _settings(kafka: str, topic: str, lake: Path):  # type: ignore[no-untyped-def]
    from lambdarec.settings import Settings

    return Settings.load(
        overrides={
            "log": {"url": f"kafka://{kafka}/{topic}", "dead_letter": f"{topic}-dlq", "partitions": 3},
            "lake": {"url": str(lake)},
            "archive": {
                "consumer_group": f"{topic}-archive",
                "max_batch_events": BATCH,
                "poll_max_records": BATCH,
                "max_batch_s": 5.0,
            },
            "batch": {"lookback_days": None},
        }
    )


def _ours(settings, n: int) -> float:  # type: ignore[no-untyped-def]
    from batch_layer.archive import Archiver

    t0 = time.perf_counter()
    with Archiver(settings) as archiver:
        stats = archiver.run(until_idle_s=0.0)
    took = time.perf_counter() - t0
    assert stats.archived == n, f"archived {stats.archived} of {n}"
    return took


def _reference(kafka: str, topic: str, out: Path, n: int) -> float:
    import pyarrow as pa
    from deltalake import write_deltalake
    from kafka import KafkaConsumer

    t0 = time.perf_counter()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=f"{topic}-bare",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=BATCH,
    )
    seen, batch = 0, []
    try:
        while seen < n:
            for records in consumer.poll(timeout_ms=500, max_records=BATCH).values():
                batch.extend(json.loads(r.value) for r in records)
            if len(batch) >= BATCH or (batch and seen + len(batch) >= n):
                write_deltalake(str(out), pa.Table.from_pylist(batch), mode="append")
                seen += len(batch)
                batch = []
                consumer.commit()
    finally:
        consumer.close()
    return time.perf_counter() - t0


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from batch_layer.interactions import read_interactions
    from batch_layer.lake_source import read_lake
    from lambdarec.eventlog import open_log
    from lambdarec.lake import open_lake

    n = SIZES[scale]
    kafka = kafka_bootstrap()
    topic = f"bench-archive-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        root = Path(tmp)
        settings = _settings(kafka, topic, root / "lake")
        lines = event_lines(n, users=max(1000, n // 20), items=max(500, n // 50), start=time.time() - n * 0.01, seed=5)
        with open_log(settings) as log:
            log.ensure_topic(3)
            log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])
        ref = _reference(kafka, topic, root / "bare", n)
        ours = _ours(settings, n)
        yield Result("archive", "archive events/s from Kafka", n / ours, n / ref, "events/s", scale,
                     note=f"{n} events, batches of {BATCH}, 3 partitions", goal=Goal(ratio=0.7))  # fmt: skip

        lake = open_lake(settings)
        version = lake.version()
        as_of = datetime.now(UTC)
        rows = lake.scan(version).select("event_id", "user_id", "item_id", "event_type", "timestamp", "weight")
        one_file = root / "same-rows.parquet"
        rows.collect().write_parquet(one_file)
        t_lake = best_of(lambda: read_lake(lake, version, settings.batch, as_of=as_of), 3)
        t_file = best_of(lambda: read_interactions(str(one_file), settings.batch, as_of=as_of), 3)
        files = len(lake.table(version).file_uris())
        yield Result("archive", "nightly read of the lake", n / t_lake, n / t_file, "rows/s", scale,
                     note=f"{files} lake files vs one parquet file", goal=Goal(ratio=0.8))  # fmt: skip
