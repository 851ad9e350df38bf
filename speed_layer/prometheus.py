"""Prometheus metrics of the speed layer (served by ``lambdarec speed run --metrics-port``)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info

from lambdarec.batch_histogram import BatchHistogram
from lambdarec.rank.defects import NONFINITE

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

EVENTS = Counter("lambdarec_speed_events_total", "Events applied to fresh state.")
DEAD_LETTERS = Counter("lambdarec_speed_dead_letters_total", "Records sent to the dead-letter log.")
POISON = Counter(
    "lambdarec_speed_poison_records_total",
    "Valid events whose application raised; dead-lettered with the error (also in dead_letters_total).",
)
DUPLICATES = Counter(
    "lambdarec_speed_duplicate_events_total",
    "Events skipped because a record at another log position carried the same event_id within the window.",
)
LAG = Gauge("lambdarec_speed_lag_records", "Records not yet committed by the group, per partition.", ["partition"])
# observed per event: counted a batch at a time (the same series as a Histogram)
FRESHNESS = BatchHistogram(
    "lambdarec_speed_freshness_seconds", "Event time to fresh state written.", buckets=_LATENCY_BUCKETS
)
APPEND_TO_STATE = BatchHistogram(
    "lambdarec_speed_append_to_state_seconds",
    "Record appended to the log to fresh state written.",
    buckets=_LATENCY_BUCKETS,
)
STAGE = Histogram(
    "lambdarec_speed_stage_seconds",
    "Where a batch's latency goes, per batch: append_to_poll (its oldest record appended to the poll returning "
    "it), poll_to_computed, computed_to_written (including the wait for the writer), written_to_committed.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
SNAPSHOT = Info("lambdarec_speed_snapshot", "The snapshot fresh vectors are being solved against.")
WAITING = Gauge(
    "lambdarec_speed_waiting",
    "1 while the consumer waits for this dependency (log or store) to answer again, else 0.",
    ["dependency"],
)
RETRIES = Counter(
    "lambdarec_speed_retries_total",
    "Failed calls to a dependency (log or store) retried after a backoff.",
    ["dependency"],
)

REGISTRY.register(NONFINITE)  # lambdarec_rank_nonfinite_total{where="speed"}: a poisoned trending row reset
