"""``impressions``: the speed layer's positive-event path while impressions arrive at ten times the click volume.

Ours = positive events (views, clicks, carts, purchases) interleaved with ``--impressions-per-event`` times as
many ``impression`` events (each listing ``--shown`` items), appended through the ingest log and applied by the
speed consumer against a published snapshot: positive events per second, from the end of the first batch (which
also loads the snapshot) to the last, four ways (``--ways``). ``impressions_topic``: impressions on a log of their
own (``log.impressions_topic``), their consumer in a process of its own meanwhile, as deployed; the positive-event
consumer never reads one. ``impressions_apart``: one log, impressions with their own consumer
(``speed.feedback.own_consumer``) meanwhile; the positive-event consumer skips them. ``impressions_skipped``: the
same, the impressions consumer not run (the positive path's own cost, as on a machine where the two consumers do
not share cores). ``one_consumer``: one consumer applies every event (both settings off). Reference = the same
positive events alone, applied by the same consumer on the same snapshot, measured right before each way.
``neighbour`` (:mod:`benchmarks.impressions_neighbour`): the control, a process that only spins in the impressions
consumer's place.
SQLite log and store by default (runs anywhere); ``--log kafka`` (``$LAMBDAREC_TEST_KAFKA``) and ``--store
cassandra`` (``$LAMBDAREC_TEST_CASSANDRA``) measure on the real ones.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Result, Scale
from benchmarks.impressions_freshness import measure, summary
from benchmarks.impressions_neighbour import neighbour
from benchmarks.speed import event_lines
from benchmarks.speed_backends import drop

SIZES = {"small": 3_000, "medium": 20_000, "large": 100_000}  # positive events
USERS, ITEMS = 2_000, 1_000


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--impressions-per-event", type=int, default=10, help="impression events per positive one")
    parser.add_argument("--shown", type=int, default=10, help="items listed by each impression")
    parser.add_argument("--log", default="sqlite", choices=("sqlite", "kafka"), help="event log backend")
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "cassandra"), help="store backend")
    parser.add_argument(
        "--ways",
        default="topic,apart,skipped,one",
        help="comma-separated: topic, apart, skipped, one, freshness, neighbour (see above)",
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="freshness way: positive events appended per second")
    parser.add_argument("--freshness-seconds", type=float, default=5.0, help="freshness way: seconds of appends")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="as deployed on cores of their own: the positive-event consumer (and the "
        "reference) on one CPU, the impressions consumer on another (needs 2 CPUs)",
    )


def impression_lines(positives: list[bytes], per_event: int, shown: int, seed: int, ids: str = "imp") -> list[bytes]:
    """``positives`` with ``per_event`` impressions of the same user before each, ``shown`` items apiece."""
    rng = np.random.default_rng(seed)
    out = []
    for k, raw in enumerate(positives):
        event = json.loads(raw)
        for j in range(per_event):
            items = rng.choice(ITEMS, size=shown, replace=False)
            out.append(
                json.dumps(
                    {
                        "event_id": f"{ids}{k}-{j}",
                        "user_id": event["user_id"],
                        "event_type": "impression",
                        "item_ids": [f"i{i}" for i in items],
                        "timestamp": event["timestamp"] - 0.001 * (per_event - j),
                    }
                ).encode()
            )
        out.append(raw)
    return out


def _drain_impressions(settings, expected: int, done, cpu: int | None) -> None:  # type: ignore[no-untyped-def]
    """The impressions consumer, in a process of its own as deployed: apply until ``expected`` are applied (on
    CPU ``cpu`` alone when given); put (impressions applied, CPU s it took)."""
    from lambdarec.logs import configure_logging
    from speed_layer.impression_consumer import ImpressionConsumer, lower_priority

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    lower_priority(settings)  # as `lambdarec speed run --impressions` does
    configure_logging("WARNING")
    with ImpressionConsumer(settings) as consumer:
        c0 = time.process_time()
        while consumer.stats.processed + consumer.stats.duplicates + consumer.stats.dead_lettered < expected:
            consumer.step()
        done.put((consumer.stats.processed, time.process_time() - c0))


def _apply(
    settings, lines: list[bytes], impressions: int, side_too: bool = True, side_cpu: int | None = None
) -> tuple[float, float, int, int, float | None]:  # type: ignore[no-untyped-def]
    """Append ``lines`` through the ingest log and apply them: (seconds from the first batch to the last, CPU
    seconds the positive-event consumer's process spent meanwhile, positive events applied then, records, CPU
    seconds of the impressions consumer's process or None where it did not run). With
    ``speed.feedback.own_consumer`` the ``impressions`` go to an impressions consumer running meanwhile (unless not
    ``side_too``: then the positive-event consumer alone skips them); with ``log.impressions_topic`` they are in a
    log of their own, which the positive consumer never reads."""
    from lambdarec.eventlog import open_ingest_log
    from lambdarec.events.peek import is_impression
    from speed_layer.consumer import SpeedConsumer

    with open_ingest_log(settings) as log:
        log.ensure_topic(3)
        log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])
    apart, topic = settings.speed.feedback.own_consumer, settings.log.impressions_topic is not None
    side_too = apart and (side_too or topic)
    done: multiprocessing.Queue = multiprocessing.Queue()
    side = multiprocessing.Process(target=_drain_impressions, args=(settings, impressions, done, side_cpu), daemon=True)
    marks: list[float] = []
    cpu: list[float] = []
    seen, first = [0], [0]
    polled = len(lines) - impressions if topic else len(lines)

    def observe(records, at: float) -> None:  # type: ignore[no-untyped-def]
        if not marks:  # the first batch also loads the snapshot: timed from its end, its positive events left out
            first[0] = sum(not is_impression(r.value) for r in records)
        marks.append(at)
        cpu.append(time.process_time())
        seen[0] += len(records)

    with SpeedConsumer(settings, observer=observe) as consumer:
        while not marks:
            consumer.step()
        if side_too:
            side.start()
        while seen[0] < polled:
            consumer.step()
        positives = len(lines) - impressions if apart else len(lines)
        if consumer.stats.processed != positives:
            raise RuntimeError(f"{consumer.stats.processed} of {positives} events applied: {consumer.stats.to_json()}")
    side_cpu_s = None
    if side_too:
        side.join(timeout=600)
        applied, side_cpu_s = done.get(timeout=1)
        if applied != impressions:
            raise RuntimeError(f"the impressions consumer applied {applied} of {impressions} impressions")
    return marks[-1] - marks[0], cpu[-1] - cpu[0], len(lines) - impressions - first[0], len(lines), side_cpu_s


def pin_cpus() -> tuple[int, int]:
    """Pin this process (the positive-event consumer, and the reference's) to one CPU; the other, for the
    impressions consumer. A clear error where the machine cannot give two."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise SystemExit(f"--pin needs 2 CPUs this process may run on; it has {len(cpus) or 'an unknown number'}")
    os.sched_setaffinity(0, {cpus[0]})
    return cpus[0], cpus[1]


def _published(
    tmp: str, name: str, log_path: Path, backends: tuple[str, str], apart: bool = False, topic: bool = False
):  # type: ignore[no-untyped-def]
    """Settings of a store of its own (``name``) holding a snapshot of ``log_path``, and a log of its own, on
    ``backends`` (log, store); ``apart``: impressions have their own consumer (``speed.feedback.own_consumer``),
    ``topic``: and a log of their own (``log.impressions_topic``)."""
    from batch_layer.job import run_batch
    from benchmarks.speed import kafka_bootstrap
    from benchmarks.speed_backends import log_overrides, store_url
    from lambdarec.settings import Settings
    from lambdarec.store import open_store

    log_kind, store_kind = backends
    unique = f"{name.replace('_', '-')}-{secrets.token_hex(3)}"
    log = log_overrides(log_kind, Path(tmp), unique, kafka_bootstrap() if log_kind == "kafka" else None)
    if topic:
        log["impressions_topic"] = f"{unique}-impressions"
    store = f"sqlite:///{tmp}/{name}-store" if store_kind == "sqlite" else store_url(store_kind, Path(tmp))
    settings = Settings.load(
        overrides={
            "store": {"url": store},
            "log": log,
            "batch": {"train": {"iterations": 5}, "top_k": 50},
            "speed": {"poll_max_records": 1000, "feedback": {"own_consumer": apart}},
        }
    )
    if store_kind == "cassandra":
        with open_store(settings) as opened:
            opened.init_schema()
    run_batch(settings, interactions=str(log_path), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False)
    return settings


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.logs import configure_logging

    configure_logging("WARNING")
    n = SIZES[scale]
    pinned = pin_cpus() if args.pin else None  # (this process's CPU, the impressions consumer's)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "log.parquet"
        synthesize(SynthSpec(users=USERS, items=ITEMS, events=20_000, seed=1)).events.write_parquet(log_path)
        start = datetime(2024, 2, 1, tzinfo=UTC).timestamp() + 60
        positives = event_lines(n + 1000, USERS, ITEMS, start, seed=2)  # the untimed first batch's share added
        mixed = impression_lines(positives, args.impressions_per_event, args.shown, seed=3)
        impressions = len(mixed) - len(positives)
        mix = f"{len(positives)} positive events, {args.impressions_per_event}x impressions of {args.shown} items"
        ways = {
            "topic": ("positive_events_per_s_impressions_topic", True, True, True,
                      "impressions on their own log, their consumer in its own process meanwhile"),
            "apart": ("positive_events_per_s_impressions_apart", True, False, True,
                      "impressions consumer in its own process meanwhile, one log"),
            "skipped": ("positive_events_per_s_impressions_skipped", True, False, False,
                        "impressions skipped, their consumer not run"),
            "one": ("positive_events_per_s_one_consumer", False, False, False, "one consumer applies every event"),
        }  # fmt: skip
        backends = (args.log, args.store)
        for way in args.ways.split(","):
            if way == "freshness":
                yield from _freshness(tmp, log_path, backends, args, scale, pinned)
                continue
            if way == "neighbour":  # the control: a process that only spins in the impressions consumer's place
                published = lambda name: _published(tmp, name, log_path, backends)  # noqa: E731
                yield from neighbour(published, _apply, positives, scale, pinned and pinned[1])
                continue
            metric, apart, topic, side_too, how = ways[way]
            # the same snapshot in stores of their own, so every run starts from the same state; the reference is
            # measured right before each way (a shared machine's load drifts within a run)
            ref = _published(tmp, f"clicks-{metric}", log_path, backends)
            ref_s, ref_cpu, ref_n, _, _ = _apply(ref, positives, 0)
            ref_rate = ref_n / ref_s
            ours = _published(tmp, metric, log_path, backends, apart, topic)
            ours_s, ours_cpu, ours_n, records, side_cpu = _apply(
                ours, mixed, impressions, side_too, pinned and pinned[1]
            )
            ours_rate = ours_n / ours_s
            for used in (ref, ours):
                drop(used)
            note = (
                f"{mix} ({records} records, {records / ours_s:.0f} records/s): {how}; {args.log} log, {args.store} "
                f"store; load average {os.getloadavg()[0]:.2f}"
                + (f"; positive consumer on CPU {pinned[0]}, impressions consumer on CPU {pinned[1]}" if pinned else "")
            )
            yield Result("impressions", metric, ours_rate, ref_rate, "events/s", scale, note=note)
            # the positive consumer's own CPU per positive event: what the path costs, whatever else runs
            per_cpu = metric.replace("positive_events_per_s", "positive_events_per_cpu_s")
            cpu_note = f"{how}; CPU s of the positive consumer's process: {ours_cpu:.2f} vs {ref_cpu:.2f} alone"
            yield Result(
                "impressions", per_cpu, ours_n / ours_cpu, ref_n / ref_cpu, "events/cpu-s", scale, note=cpu_note
            )
            if side_cpu is not None:  # what an impression costs its consumer, against a positive event's cost
                side_metric = metric.replace("positive_events_per_s", "impressions_consumer_cpu_s_per_10k")
                yield Result("impressions", side_metric, side_cpu / impressions * 1e4, ref_cpu / ref_n * 1e4, "cpu-s",
                             scale, higher_is_better=False,
                             note=f"{how}; reference: the positive consumer's CPU s per 10k positive events alone; "
                             f"{impressions} impressions of {args.shown} items took {side_cpu:.2f} CPU s")  # fmt: skip


def _freshness(tmp, log_path, backends, args, scale, pinned) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    """Positive events' append-to-written p50 and p99 at ``--rate`` with impressions at ten times the volume on
    their own log and their consumer running, against the same positive events alone
    (:mod:`benchmarks.impressions_freshness`)."""

    n = max(1, int(args.rate * args.freshness_seconds))
    start = datetime(2024, 2, 1, tzinfo=UTC).timestamp() + 60
    warm = event_lines(2000, USERS, ITEMS, start, seed=4, ids="w")
    stream = event_lines(n, USERS, ITEMS, start + 100, seed=5, ids="f")
    warm_mixed = impression_lines(warm, args.impressions_per_event, args.shown, seed=6, ids="wimp")
    mixed = impression_lines(stream, args.impressions_per_event, args.shown, seed=7, ids="fimp")
    where = f"{args.log} log, {args.store} store"
    ref = _published(tmp, "fresh-ref", log_path, backends)
    alone = measure(ref, (warm, 0), stream, args.rate, 0, None)
    warm_both = (warm_mixed, len(warm_mixed) - len(warm))
    unread = _published(tmp, "fresh-unread", log_path, backends, apart=True, topic=True)
    appended = measure(unread, warm_both, mixed, args.rate, len(mixed) - n, None, consume=False)
    ours = _published(tmp, "fresh-topic", log_path, backends, apart=True, topic=True)
    beside = measure(ours, warm_both, mixed, args.rate, len(mixed) - n, pinned and pinned[1])
    for used in (ref, unread, ours):
        drop(used)
    (ref50, ref99, ref_note), (our50, our99, our_note) = summary(alone), summary(beside)
    app50, app99, app_note = summary(appended)
    load = f"load average {os.getloadavg()[0]:.2f}"
    head = (f"{n} positive events at {args.rate:.0f}/s with {args.impressions_per_event}x impressions of "
            f"{args.shown} items on their own log, their consumer running; {where}; {load}")  # fmt: skip
    for q, ours_ms, ref_ms, app_ms in (("p50", our50, ref50, app50), ("p99", our99, ref99, app99)):
        yield Result("impressions", f"positive_freshness_{q}_ms[{args.log},{args.store}]", ours_ms, ref_ms, "ms",
                     scale, higher_is_better=False, note=f"{head}. Ours: {our_note}. Alone: {ref_note}")  # fmt: skip
        # the impressions consumer's own share: against the same appends with that consumer not running (on a
        # shared box the producer and the log's broker take cores too; deployed, they are on machines of their own)
        unconsumed = f"{head}. Reference: the same appends, the impressions consumer not run: {app_note}"
        yield Result("impressions", f"positive_freshness_{q}_ms_vs_unconsumed[{args.log},{args.store}]", ours_ms,
                     app_ms, "ms", scale, higher_is_better=False, note=unconsumed)  # fmt: skip
