"""``impressions``: the speed layer's positive-event path while impressions arrive at ten times the click volume.

Ours = positive events (views, clicks, carts, purchases) interleaved with ``--impressions-per-event`` times as
many ``impression`` events (each listing ``--shown`` items), applied by the speed consumer against a published
snapshot: positive events per second of the whole run, three ways. ``impressions_apart``: impressions have their
own consumer (``speed.feedback.own_consumer``), run in a process of its own meanwhile, as deployed; the
positive-event consumer skips them. ``impressions_skipped``: the same, the impressions consumer not run (the
positive path's own cost, as on a machine where the two consumers do not share cores). ``one_consumer``: one
consumer applies every event (the setting off). Reference = the same positive events alone, applied by the same
consumer on the same snapshot in the same run. Embedded backends (SQLite log and store), so it runs anywhere.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Result, Scale
from benchmarks.speed import event_lines

SIZES = {"small": 3_000, "medium": 20_000, "large": 100_000}  # positive events
USERS, ITEMS = 2_000, 1_000


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--impressions-per-event", type=int, default=10, help="impression events per positive one")
    parser.add_argument("--shown", type=int, default=10, help="items listed by each impression")


def impression_lines(positives: list[bytes], per_event: int, shown: int, seed: int) -> list[bytes]:
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
                        "event_id": f"imp{k}-{j}",
                        "user_id": event["user_id"],
                        "event_type": "impression",
                        "item_ids": [f"i{i}" for i in items],
                        "timestamp": event["timestamp"] - 0.001 * (per_event - j),
                    }
                ).encode()
            )
        out.append(raw)
    return out


def _drain_impressions(settings, expected: int, done) -> None:  # type: ignore[no-untyped-def]
    """The impressions consumer, in a process of its own as deployed: apply until ``expected`` are applied."""
    from lambdarec.logs import configure_logging
    from speed_layer.impression_consumer import ImpressionConsumer

    configure_logging("WARNING")
    with ImpressionConsumer(settings) as consumer:
        while consumer.stats.processed + consumer.stats.duplicates + consumer.stats.dead_lettered < expected:
            consumer.step()
        done.put(consumer.stats.processed)


def _apply(settings, lines: list[bytes], impressions: int, side_too: bool = True) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Append ``lines`` to the log and apply them: (seconds from the first batch to the last, records). With
    ``speed.feedback.own_consumer`` the ``impressions`` go to an impressions consumer running meanwhile (unless
    not ``side_too``: then the positive-event consumer alone skips them)."""
    from lambdarec.eventlog import open_log
    from speed_layer.consumer import SpeedConsumer

    with open_log(settings) as log:
        log.ensure_topic(3)
        log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])
    apart = settings.speed.feedback.own_consumer
    side_too = apart and side_too
    done: multiprocessing.Queue = multiprocessing.Queue()
    side = multiprocessing.Process(target=_drain_impressions, args=(settings, impressions, done), daemon=True)
    marks: list[float] = []
    seen = [0]

    def observe(records, at: float) -> None:  # type: ignore[no-untyped-def]
        marks.append(at)
        seen[0] += len(records)

    with SpeedConsumer(settings, observer=observe) as consumer:
        consumer.step()  # the first batch also loads the snapshot: timed from its end
        if side_too:
            side.start()
        while seen[0] < len(lines):
            consumer.step()
        positives = len(lines) - impressions if apart else len(lines)
        if consumer.stats.processed != positives:
            raise RuntimeError(f"{consumer.stats.processed} of {positives} events applied: {consumer.stats.to_json()}")
    if side_too:
        side.join(timeout=600)
        if (applied := done.get(timeout=1)) != impressions:
            raise RuntimeError(f"the impressions consumer applied {applied} of {impressions} impressions")
    return marks[-1] - marks[0], len(lines)


def _published(tmp: str, name: str, log_path: Path, apart: bool = False):  # type: ignore[no-untyped-def]
    """Settings of a store of its own (``name``) holding a snapshot of ``log_path``, and a log of its own;
    ``apart``: impressions have their own consumer (``speed.feedback.own_consumer``)."""
    from batch_layer.job import run_batch
    from lambdarec.settings import Settings

    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp}/{name}-store"},
            "log": {"url": f"sqlite:///{tmp}/{name}-log"},
            "batch": {"train": {"iterations": 5}, "top_k": 50},
            "speed": {"poll_max_records": 1000, "feedback": {"own_consumer": apart}},
        }
    )
    run_batch(settings, interactions=str(log_path), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False)
    return settings


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.logs import configure_logging

    configure_logging("WARNING")
    n = SIZES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "log.parquet"
        synthesize(SynthSpec(users=USERS, items=ITEMS, events=20_000, seed=1)).events.write_parquet(log_path)
        start = datetime(2024, 2, 1, tzinfo=UTC).timestamp() + 60
        positives = event_lines(n + 1000, USERS, ITEMS, start, seed=2)  # the untimed first batch's share added
        mixed = impression_lines(positives, args.impressions_per_event, args.shown, seed=3)
        impressions = len(mixed) - len(positives)
        share = len(positives) / len(mixed)
        mix = f"{len(positives)} positive events, {args.impressions_per_event}x impressions of {args.shown} items"
        ways = (
            (
                "positive_events_per_s_impressions_apart",
                True,
                True,
                "impressions consumer in its own process meanwhile",
            ),
            ("positive_events_per_s_impressions_skipped", True, False, "impressions skipped, their consumer not run"),
            ("positive_events_per_s_one_consumer", False, False, "one consumer applies every event"),
        )
        for metric, apart, side_too, how in ways:
            # the same snapshot in stores of their own, so every run starts from the same state; the reference is
            # measured right before each way (a shared machine's load drifts within a run)
            ref_s, _ = _apply(_published(tmp, f"clicks-{metric}", log_path), positives, 0)
            ref_rate = (len(positives) - 1000) / ref_s  # the untimed first batch holds 1000 records of either mix
            ours_s, records = _apply(_published(tmp, metric, log_path, apart), mixed, impressions, side_too)
            ours_rate = (len(positives) - 1000 * share) / ours_s
            note = f"{mix} ({records} records, {records / ours_s:.0f} records/s): {how}; SQLite log and store"
            yield Result("impressions", metric, ours_rate, ref_rate, "events/s", scale, note=note)
