"""The producers' view of the log when impressions have a topic of their own (``log.impressions_topic``): every
ingest path appends through it, so ``impression`` events land in the impressions log and the positive-event
consumer never reads them; every other event, and everything else (consumers, dead letters, end offsets), is the
main log's.

An append that reaches the main log but not the impressions log is reported as an append of unknown outcome
(:class:`~lambdarec.eventlog.base.AppendOutcomeUnknownError`, with what was confirmed): resending the batch under
the same ``event_id``s is safe, as for any unconfirmed append.

Any other event found on the impressions log (a producer wrote it straight to that topic) is dead-lettered with
:data:`NOT_AN_IMPRESSION` by the impressions consumer and by the impressions archiver: it is neither applied nor
archived, so a resend through ingest (to the main log) lands once.

Example
-------
>>> log = IngestLog(open_log(settings), open_log(impressions_log(settings.log)))   # doctest: +SKIP
>>> log.append([click, impression])   # the click to log.url's topic, the impression to log.impressions_topic
2
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lambdarec.eventlog.base import (
    AppendOutcomeUnknownError,
    Consumer,
    DeadLetter,
    EventLog,
    EventLogError,
    PartitionCallback,
    Record,
    keyed_values,
)
from lambdarec.events import Event
from lambdarec.events.peek import is_impression

# Why an event other than an impression found on the impressions log is dead-lettered (by the impressions
# consumer and the impressions archiver alike): ingest never sends one there, so a producer wrote it straight to
# that topic; no consumer applies it, so the master dataset does not hold it either until it is resent.
NOT_AN_IMPRESSION = (
    "not an impression: the impressions log (log.impressions_topic) holds impression events only; resend it "
    "through ingest (POST /v1/events, lambdarec events send), which sends it to log.url's log"
)


class IngestLog(EventLog):
    """``main`` for all but ``impression`` events, which go to ``impressions``; closing it closes both."""

    def __init__(self, main: EventLog, impressions: EventLog) -> None:
        self.main = main
        self.impressions = impressions

    def append(self, events: Iterable[Event | bytes], keys: Iterable[str | None] | None = None) -> int:
        others: list[tuple[str | None, bytes]] = []
        shown: list[tuple[str | None, bytes]] = []
        for key, value in keyed_values(events, keys):
            (shown if is_impression(value) else others).append((key, value))
        done = self.main.append([v for _, v in others], [k for k, _ in others]) if others else 0
        if not shown:
            return done
        try:
            return done + self.impressions.append([v for _, v in shown], [k for k, _ in shown])
        except AppendOutcomeUnknownError as exc:
            raise AppendOutcomeUnknownError(str(exc), done + exc.confirmed) from exc
        except EventLogError as exc:
            if not done:
                raise
            raise AppendOutcomeUnknownError(
                f"{done} events were appended to the log, its impressions not to the impressions log: {exc}", done
            ) from exc

    def consumer(
        self,
        group: str | None = None,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ) -> Consumer:
        return self.main.consumer(group, on_assign=on_assign, on_revoke=on_revoke)

    def dead_letter(self, raw: bytes, reason: str, source: tuple[int, int] | None = None) -> None:
        self.main.dead_letter(raw, reason, source)

    def dead_letter_records(self, letters: Sequence[tuple[Record, str]]) -> int:
        return self.main.dead_letter_records(letters)

    def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.main.read_dead_letters(limit)

    def ensure_topic(self, partitions: int | None = None) -> int:
        """Create both logs if absent; the main log's partition count."""
        self.impressions.ensure_topic(partitions)
        return self.main.ensure_topic(partitions)

    def end_offsets(self) -> dict[int, int]:
        return self.main.end_offsets()

    def ping(self) -> None:
        self.main.ping()
        self.impressions.ping()

    def close(self) -> None:
        try:
            self.impressions.close()
        finally:
            self.main.close()
