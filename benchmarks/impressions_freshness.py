"""``impressions --ways freshness``: what "not slowed" means for a user of the positive path. Positive events are
appended at a fixed rate (``--rate``, 2,000/s: the freshness goal's rate) for ``--freshness-seconds``, by a process
of their own, while the positive-event consumer runs; the figure is each positive event's time from append to its
state written (p50, p99). Ours: ``--impressions-per-event`` times as many impressions appended beside them (the
same ticks, through the ingest log, so on their own log: ``log.impressions_topic``), applied by the impressions
consumer in a process of its own meanwhile, as deployed. Reference: the same positive events at the same rate alone,
on the same snapshot, measured right before. Both warm up first (the snapshot loaded, the first batches applied)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import numpy as np

from lambdarec.events.peek import is_impression

TICKS_PER_S = 50


def _append(settings, stream: list[bytes], keys: list[str], per_tick: int, out) -> None:  # type: ignore[no-untyped-def]
    """Append ``stream`` through the ingest log, ``per_tick`` records every 1/``TICKS_PER_S`` s (a process of its
    own, so the appends never take the consumer's interpreter); put the seconds it took."""
    from lambdarec.eventlog import open_ingest_log

    with open_ingest_log(settings) as log:
        t0 = t_next = time.perf_counter()
        for k in range(0, len(stream), per_tick):
            log.append(stream[k : k + per_tick], keys=keys[k : k + per_tick])
            t_next += 1.0 / TICKS_PER_S
            time.sleep(max(0.0, t_next - time.perf_counter()))
        out.put(time.perf_counter() - t0)


def _impressions(settings, warm: int, stop, out, cpu: int | None) -> None:  # type: ignore[no-untyped-def]
    """The impressions consumer until ``stop`` is set and it is drained: put (impressions applied, CPU s and
    append-to-written seconds of those after the ``warm`` first)."""
    from lambdarec.logs import configure_logging
    from speed_layer.impression_consumer import ImpressionConsumer, lower_priority

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    lower_priority(settings)  # as `lambdarec speed run --impressions` does
    configure_logging("WARNING")
    latencies: list[float] = []

    def observe(records, at: float) -> None:  # type: ignore[no-untyped-def]
        latencies.extend(at - r.timestamp_ms / 1000 for r in records)

    with ImpressionConsumer(settings, observer=observe) as consumer:
        while consumer.stats.processed < warm:
            consumer.step()
        out.put("warm")
        c0, before = time.process_time(), consumer.stats.processed
        while True:
            got = consumer.step()
            if not got and stop.is_set():
                break
        out.put((consumer.stats.processed - before, time.process_time() - c0, latencies[warm:]))


def measure(
    settings,
    warm: tuple[list[bytes], int],
    stream: list[bytes],
    rate: float,
    impressions: int,
    side_cpu: int | None,
    consume: bool = True,
) -> dict:  # type: ignore[no-untyped-def]
    """Append ``warm[0]`` and apply it, then append ``stream`` (``impressions`` of them impressions, ``warm[1]``
    in the warm-up) at ``rate`` positive events/s while the consumers run: the positive events' append-to-written
    seconds, the positive consumer's CPU s, the impressions consumer's (processed, CPU s, latencies). Not
    ``consume``: the impressions are appended but their consumer is not run (what the appends and the log alone
    cost the positive path)."""
    from lambdarec.eventlog import open_ingest_log
    from speed_layer.consumer import SpeedConsumer

    warm_lines, warm_impressions = warm
    latencies: list[float] = []
    spawn = multiprocessing.get_context("spawn")  # never a fork of a process holding SQLite connections
    stop, side_out, app_out = spawn.Event(), spawn.Queue(), spawn.Queue()
    side = appender = None
    with open_ingest_log(settings) as log:
        log.ensure_topic(3)
        log.append(warm_lines, keys=[json.loads(x)["user_id"] for x in warm_lines])
    positives = len(stream) - impressions
    share = len(stream) / positives  # records per positive event
    per_tick = max(1, round(rate * share / TICKS_PER_S))
    keys = [json.loads(x)["user_id"] for x in stream]
    armed = threading.Event()  # the warm-up is not measured

    def observe(records, at: float) -> None:  # type: ignore[no-untyped-def]
        if armed.is_set():
            latencies.extend(at - r.timestamp_ms / 1000 for r in records if not is_impression(r.value))

    try:  # whatever fails, no child is left behind (the impressions one loops until `stop`)
        if impressions and consume:
            side = spawn.Process(target=_impressions, args=(settings, warm_impressions, stop, side_out, side_cpu))
            side.start()
        with SpeedConsumer(settings, observer=observe) as consumer:
            while consumer.stats.processed < len(warm_lines) - warm_impressions:
                consumer.step()
            if side is not None:
                _result(side_out, side, "the impressions consumer")  # warmed up
            armed.set()
            appender = spawn.Process(target=_append, args=(settings, stream, keys, per_tick, app_out))
            took, cpu = _run_while_appending(consumer, appender, app_out, lambda: len(latencies) >= positives)
        appender.join()
        side_result = None
        if side is not None:
            stop.set()
            side_result = _result(side_out, side, "the impressions consumer")
            side.join()
    finally:
        stop.set()
        _end(appender, side)
    return {"latencies": latencies, "positives": positives, "cpu_s": cpu, "append_s": took, "side": side_result}


def _run_while_appending(consumer, appender, app_out, seen_all) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Run ``consumer`` in a thread while ``appender`` appends, until ``seen_all()`` (60 s at most after the last
    append); the consumer always stopped. (seconds the appends took, the consumer's process CPU s)."""
    runner = threading.Thread(target=consumer.run)
    c0 = time.process_time()
    runner.start()
    try:
        appender.start()
        took = _result(app_out, appender, "the appender")
        deadline = time.time() + 60
        while not seen_all() and time.time() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop()
        runner.join()
    return took, time.process_time() - c0


def _end(*processes) -> None:  # type: ignore[no-untyped-def]
    """Let each started child finish (a few seconds), else terminate it: none outlives ``measure``."""
    for process in processes:
        if process is None or process.pid is None:
            continue
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def _result(queue, process, who: str):  # type: ignore[no-untyped-def]
    """What ``process`` puts next on ``queue``; a clear error as soon as it died without."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.5)
        except Exception:  # queue.Empty: still working, unless it died
            if not process.is_alive():
                raise RuntimeError(f"{who} exited ({process.exitcode}) without a result: see its traceback") from None
    raise RuntimeError(f"{who} gave no result within 600 s")


def summary(m: dict) -> tuple[float, float, str]:
    """(p50 ms, p99 ms, a note) of one measurement."""
    lat = np.asarray(m["latencies"]) * 1000
    p50, p99 = (float(np.percentile(lat, q)) for q in (50, 99)) if len(lat) else (float("nan"),) * 2
    note = (
        f"{len(lat)} of {m['positives']} positive events seen, appended in {m['append_s']:.1f} s; positive "
        f"consumer CPU {m['cpu_s']:.1f} s"
    )
    if m["side"] is not None:
        done, cpu, side_lat = m["side"]
        side_ms = np.asarray(side_lat) * 1000 if side_lat else np.asarray([float("nan")])
        note += (
            f"; impressions consumer: {done} impressions, {cpu:.1f} CPU s ({cpu / max(done, 1) * 1e4:.2f} per 10k), "
            f"append-to-written p50 {np.percentile(side_ms, 50):.0f} ms, p99 {np.percentile(side_ms, 99):.0f} ms"
        )
    return p50, p99, note
