"""What the speed consumer counts: plain counters per process, and the Prometheus metrics, per batch committed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from speed_layer import prometheus
from speed_layer.pipeline import Batch


@dataclass
class SpeedStats:
    """Counts since the consumer started: plain counters, so memory does not grow with users or events.

    ``users`` and ``items`` count state rows written (a user or trending shard once per batch it appears in).
    """

    processed: int = 0  # events applied
    dead_lettered: int = 0  # bad events and poison records sent to the dead-letter log
    batches: int = 0
    users: int = 0
    items: int = 0
    duplicates: int = 0  # events skipped because their event_id was applied already
    failed: int = 0  # poison records: valid events whose application raised (dead-lettered too)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def count_batch(stats: SpeedStats, batch: Batch, written_at: float) -> None:
    """Count a committed batch in ``stats`` and the metrics; ``written_at``: when its state was written (epoch s)."""
    st, applied, bad, poison, repeats = stats, batch.applied, batch.bad, batch.poison, batch.repeats
    st.processed += len(applied)
    st.dead_lettered += len(bad) + len(poison)
    st.failed += len(poison)
    st.duplicates += len(repeats)
    st.batches += 1
    st.users += len(batch.users)
    st.items += len(batch.items)
    prometheus.EVENTS.inc(len(applied))
    prometheus.DEAD_LETTERS.inc(len(bad) + len(poison))
    prometheus.POISON.inc(len(poison))
    prometheus.DUPLICATES.inc(len(repeats))
    if applied:
        times = np.fromiter((event.timestamp for event, _ in applied), dtype=np.float64, count=len(applied))
        prometheus.FRESHNESS.observe_many(np.maximum(written_at - times, 0.0))
    if batch.records:
        appended = np.fromiter((r.timestamp_ms for r in batch.records), dtype=np.float64, count=len(batch.records))
        prometheus.APPEND_TO_STATE.observe_many(np.maximum(written_at - appended / 1000.0, 0.0))
    if batch.polled_at and batch.records:
        for stage, seconds in stage_seconds(batch).items():
            prometheus.STAGE.labels(stage=stage).observe(max(seconds, 0.0))


def stage_seconds(batch: Batch) -> dict[str, float]:
    """Where ``batch``'s latency went (seconds per stage; the append stage from its oldest record)."""
    appended = min(r.timestamp_ms for r in batch.records) / 1000.0 if batch.records else batch.polled_at
    return {
        "append_to_poll": batch.polled_at - appended,
        "poll_to_computed": batch.computed_at - batch.polled_at,
        "computed_to_written": batch.written_at - batch.computed_at,
        "written_to_committed": batch.committed_at - batch.written_at,
    }
