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
from lambdarec.eventlog.split import NOT_AN_IMPRESSION, IngestLog
from lambdarec.eventlog.sqlite import SQLiteEventLog
from lambdarec.masking import mask_url
from lambdarec.settings import LogSettings, Settings
from lambdarec.settings.eventlog import impressions_log

__all__ = [
    "NOT_AN_IMPRESSION",
    "AppendOutcomeUnknownError",
    "CommitFailedError",
    "Consumer",
    "DeadLetter",
    "EventLog",
    "EventLogError",
    "EventLogUnavailableError",
    "IngestLog",
    "Record",
    "Rejection",
    "SendInterruptedError",
    "SendResult",
    "SentRange",
    "next_positions",
    "open_impressions_log",
    "open_ingest_log",
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


def open_impressions_log(settings: Settings) -> EventLog:
    """The log ``impression`` events are read from: ``log.impressions_topic``'s, else the main log."""
    own = impressions_log(settings.log)
    return open_log(settings if own is None else own)


def open_ingest_log(settings: Settings) -> EventLog:
    """The log producers append to: the main log, routing ``impression`` events to ``log.impressions_topic`` when
    it is set (:class:`IngestLog`)."""
    own = impressions_log(settings.log)
    main = open_log(settings)
    return main if own is None else IngestLog(main, open_log(own))
