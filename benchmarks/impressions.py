"""``impressions``: the speed layer's positive-event path while impressions arrive at ten times the click volume.

Ours = positive events (views, clicks, carts, purchases) interleaved with ``--impressions-per-event`` times as
many ``impression`` events (each listing ``--shown`` items), applied by the speed consumer against a published
snapshot: positive events per second of the whole run. Reference = the same positive events alone, applied by
the same consumer on the same snapshot in the same run. A ratio near 1 means impressions cost the positive path
little: they are parsed, deduplicated and kept in the users' fresh state, but never re-solve a fold-in vector
nor touch a trending row. Embedded backends (SQLite log and store), so it runs anywhere.
"""

from __future__ import annotations

import json
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


def _apply(settings, lines: list[bytes]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Append ``lines`` to the log and apply them: (seconds from the first batch to the last, records)."""
    from lambdarec.eventlog import open_log
    from speed_layer.consumer import SpeedConsumer

    with open_log(settings) as log:
        log.ensure_topic(3)
        log.append(lines, keys=[json.loads(x)["user_id"] for x in lines])
    marks: list[float] = []
    with SpeedConsumer(settings, observer=lambda recs, at: marks.append(at)) as consumer:
        consumer.step()  # the first batch also loads the snapshot: timed from its end
        st = consumer.stats
        while st.processed + st.duplicates + st.dead_lettered < len(lines):
            consumer.step()
        if st.processed != len(lines):
            raise RuntimeError(f"{st.processed} of {len(lines)} events applied: {st.to_json()}")
    return marks[-1] - marks[0], len(lines)


def _published(tmp: str, name: str, log_path: Path):  # type: ignore[no-untyped-def]
    """Settings of a store of its own (``name``) holding a snapshot of ``log_path``, and a log of its own."""
    from batch_layer.job import run_batch
    from lambdarec.settings import Settings

    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp}/{name}-store"},
            "log": {"url": f"sqlite:///{tmp}/{name}-log"},
            "batch": {"train": {"iterations": 5}, "top_k": 50},
            "speed": {"poll_max_records": 1000},
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
        # the same snapshot in two stores of their own: both runs start from the same state
        ref_s, _ = _apply(_published(tmp, "clicks", log_path), positives)
        ours_s, records = _apply(_published(tmp, "mixed", log_path), mixed)
        share = len(positives) / records
        # positives applied in the timed span: the untimed first batch holds 1000 records of either mix
        ref_rate = (len(positives) - 1000) / ref_s
        ours_rate = (len(positives) - 1000 * share) / ours_s
        yield Result(
            "impressions",
            "positive_events_per_s_with_impressions",
            ours_rate,
            ref_rate,
            "events/s",
            scale,
            note=f"{len(positives)} positive events, {args.impressions_per_event}x impressions of {args.shown} "
            f"items ({records} records, {records / ours_s:.0f} records/s), SQLite log and store",
        )
