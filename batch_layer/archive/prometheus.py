"""Prometheus metrics of the archiver (served by ``lambdarec archive run --metrics-port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ARCHIVED = Counter("lambdarec_archive_events_total", "Events appended to the lake by this archiver.")
DEAD_LETTERS = Counter("lambdarec_archive_dead_letters_total", "Records kept in the lake's dead-letter table.")
ERASED = Counter("lambdarec_archive_erased_total", "Records dropped because their user was erased.")
SKIPPED = Counter(
    "lambdarec_archive_already_archived_total", "Records read again that the lake already held (after a restart)."
)
COMMITS = Counter("lambdarec_archive_commits_total", "Lake commits made by this archiver.")
LAG = Gauge(
    "lambdarec_archive_lag_records", "Records in the log not yet archived (log end - lake position).", ["partition"]
)
POSITION = Gauge("lambdarec_archive_position", "Next offset not yet archived, per log partition.", ["partition"])
LAKE_VERSION = Gauge("lambdarec_archive_lake_version", "The lake table version of the last commit.")
COMMIT_SECONDS = Histogram(
    "lambdarec_archive_commit_seconds",
    "Time of one lake commit.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WAITING = Gauge(
    "lambdarec_archive_waiting",
    "1 while the archiver waits for this dependency (log or lake) to answer again, else 0.",
    ["dependency"],
)
RETRIES = Counter(
    "lambdarec_archive_retries_total",
    "Failed calls to a dependency (log or lake) retried after a backoff.",
    ["dependency"],
)
