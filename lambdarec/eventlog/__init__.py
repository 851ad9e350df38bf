"""The event log port and its backends, picked by the scheme of ``log.url``.

Example
-------
>>> with open_log(settings) as log:                          # doctest: +SKIP
...     log.ensure_topic()
...     result = send_events(log, lines, EventRules.from_settings(settings))
"""

from __future__ import annotations

from urllib.parse import urlsplit

from lambdarec.eventlog.base import (
    AppendOutcomeUnknownError,
    CommitFailedError,
    Consumer,
    DeadLetter,
    EventLog,
    EventLogError,
    EventLogUnavailableError,
    Record,
    next_positions,
    partition_for,
)
from lambdarec.eventlog.send import Rejection, SendInterruptedError, SendResult, SentRange, send_events
from lambdarec.eventlog.sqlite import SQLiteEventLog
from lambdarec.masking import mask_url
from lambdarec.settings import LogSettings, Settings

__all__ = [
    "AppendOutcomeUnknownError",
    "CommitFailedError",
    "Consumer",
    "DeadLetter",
    "EventLog",
    "EventLogError",
    "EventLogUnavailableError",
    "Record",
    "Rejection",
    "SendInterruptedError",
    "SendResult",
    "SentRange",
    "next_positions",
    "open_log",
    "partition_for",
    "send_events",
]


def open_log(settings: Settings | LogSettings) -> EventLog:
    """Open the backend that ``log.url`` names (``sqlite://`` or ``kafka://``); Kafka connects on first use."""
    cfg = settings.log if isinstance(settings, Settings) else settings
    scheme = urlsplit(cfg.url).scheme
    if scheme == "sqlite":
        return SQLiteEventLog(cfg)
    if scheme == "kafka":
        # Lazy: kafka-python takes about 0.3 s to import, paid only by processes that open a Kafka log.
        from lambdarec.eventlog.kafka import KafkaEventLog

        return KafkaEventLog(cfg)
    raise ValueError(f"log.url {mask_url(cfg.url)!r}: unknown scheme {scheme!r}; expected sqlite or kafka")
