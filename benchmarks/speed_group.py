"""Freshness with several speed consumers, one process each, as a deployment runs them (one per partition).

One consumer is one Python interpreter: at 2,000 events/s it keeps its own core busy for most of each second,
and an event waits for the batches ahead of it. ``deploy/k8s`` runs as many consumers as the topic has
partitions; this measures the time from append to state written with ``members`` of them sharing one group,
against one consumer on the same log, at the same steady rate (:func:`benchmarks.speed.freshness` is the one
consumer case in this process).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

from lambdarec.settings import Settings


def _member(run: dict, share: int, ready: Any, out: Any, stop: Any) -> None:
    from lambdarec.logs import configure_logging
    from speed_layer.consumer import SpeedConsumer

    configure_logging("WARNING")

    def observe(batch: Any) -> None:  # seconds from append to written, per record of the batch
        out.put([batch.written_at - r.timestamp_ms / 1000 for r in batch.polled or batch.records])

    with SpeedConsumer(Settings.load(overrides=run), on_batch=observe) as consumer:
        while len(consumer.consumer.assignment()) != share:  # until the group has settled on its members
            consumer.cycle(draining=True)
        ready.put(True)
        while not stop.is_set():
            consumer.cycle(draining=True)
        consumer.settle()


def group_freshness(run: dict, stream: list[bytes], rate: int, members: int, partitions: int) -> list[float]:
    """Seconds from append to state written for each event of ``stream``, appended at ``rate`` events/s (from a
    process of its own) while ``members`` consumer processes share a group on a log of ``partitions``: one per
    record of every batch the members wrote (a batch delivered again would count twice)."""
    from benchmarks.speed import produce
    from lambdarec.eventlog import open_log

    settings = Settings.load(overrides=run)
    with open_log(settings) as log:
        log.ensure_topic(partitions)
    ctx = multiprocessing.get_context("spawn")
    ready, out, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_member, args=(run, partitions // members, ready, out, stop)) for _ in range(members)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    try:
        for _ in procs:
            ready.get(timeout=120)
        producer = ctx.Process(target=produce, args=(settings, stream, rate))
        producer.start()
        deadline = time.time() + len(stream) / rate + 60
        while len(latencies) < len(stream) and time.time() < deadline:
            try:
                latencies.extend(out.get(timeout=1.0))
            except queue.Empty:
                continue
        producer.join()
    finally:
        stop.set()
        for p in procs:  # a member's queued batches must be read for it to exit (and are counted: none dropped)
            while p.is_alive():
                try:
                    latencies.extend(out.get(timeout=0.2))
                except queue.Empty:
                    p.join(timeout=0.1)
    if len(latencies) < len(stream):
        raise RuntimeError(f"{members} consumers wrote the state of {len(latencies)} of {len(stream)} events in time")
    return latencies
