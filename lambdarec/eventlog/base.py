"""The ``EventLog`` port: append events, consume them with committed positions per consumer group, dead-letter.

The log is split into partitions; an event's key (its ``user_id``) picks the partition, so one user's events keep
their order. A position (``offset``) counts records within one partition from 0. A consumer group's committed
position for a partition is the offset of the *next* record to read: commit only after the state built from the
records before it is written, and delivery is at-least-once.

Example
-------
>>> log = open_log(settings)                                    # doctest: +SKIP
>>> log.ensure_topic()
>>> log.append([event1, event2])                                # keyed by user_id
2
>>> with log.consumer("speed") as consumer:
...     records = consumer.poll(max_records=500, timeout_ms=100)
...     apply(records)                                          # write state first...
...     consumer.commit(next_positions(records))                # ...then commit
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lambdarec.events import Event, encode_event

PartitionCallback = Callable[[set[int]], None]


class EventLogError(RuntimeError):
    """Base of the event log's errors."""


class EventLogUnavailableError(EventLogError):
    """The backend cannot be reached; the message names the brokers or path tried."""


class AppendOutcomeUnknownError(EventLogUnavailableError):
    """The log took the events but did not confirm them in time: some or all may be (or may yet be) appended.

    Resending the same events is the way out; their ``event_id`` makes a repeat count once. ``confirmed`` is how
    many of the events the log did confirm before it stopped answering.
    """

    def __init__(self, message: str, confirmed: int = 0):
        super().__init__(message)
        self.confirmed = confirmed


class CommitFailedError(EventLogError):
    """A commit was refused because the partition is no longer this consumer's (its group rebalanced).

    The records behind the refused positions will be delivered again, to whichever member owns them now.
    """


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from the log. ``timestamp_ms`` is when it was appended, not the event time."""

    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the consumer could not use: its original bytes, why, and where it came from."""

    value: bytes
    reason: str
    source: tuple[int, int] | None  # (partition, offset) in the event log, None when it never got there
    timestamp_ms: int


def partition_for(key: str | None, partitions: int) -> int:
    """The partition of ``key``: CRC-32 of its UTF-8 bytes modulo ``partitions`` (stable across processes).

    Used by the SQLite backend; Kafka's producer applies its own (murmur2) partitioner.
    """
    return zlib.crc32(key.encode()) % partitions if key else 0


def next_positions(records: Iterable[Record]) -> dict[int, int]:
    """What to commit after applying ``records``: per partition, one past the highest offset seen."""
    out: dict[int, int] = {}
    for r in records:
        if r.offset + 1 > out.get(r.partition, -1):
            out[r.partition] = r.offset + 1
    return out


def keyed_values(
    events: Iterable[Event | bytes], keys: Iterable[str | None] | None
) -> Iterable[tuple[str | None, bytes]]:
    """Pair each event with its key: ``keys`` when given, else an ``Event``'s ``user_id`` (raw bytes: None)."""
    key_iter = iter(keys) if keys is not None else None
    for ev in events:
        given = next(key_iter, None) if key_iter is not None else None
        if isinstance(ev, Event):
            yield (given if key_iter is not None else ev.user_id), encode_event(ev)
        else:
            yield given, bytes(ev)


class Consumer(abc.ABC):
    """One member of a consumer group, reading the partitions the group gives it.

    ``on_assign(partitions)`` is called after partitions arrive and ``on_revoke(partitions)`` before they leave
    (at a rebalance and at ``close``): flush state for them there and ``commit``. Inside ``on_revoke`` only
    ``commit`` may be called. Use a consumer from one thread at a time.
    """

    group: str

    @abc.abstractmethod
    def poll(self, max_records: int = 1000, timeout_ms: int = 100) -> list[Record]:
        """Up to ``max_records`` records, in offset order within each partition; waits up to ``timeout_ms``."""

    @abc.abstractmethod
    def commit(self, positions: Mapping[int, int]) -> None:
        """Record ``{partition: next offset to read}`` for the group. Commits exactly what is given.

        Raises ``CommitFailedError`` when a partition is no longer this consumer's.
        """

    @abc.abstractmethod
    def committed(self) -> dict[int, int]:
        """The group's committed positions, for every partition that has one."""

    @abc.abstractmethod
    def assignment(self) -> set[int]:
        """The partitions this consumer reads now."""

    @abc.abstractmethod
    def lag(self) -> dict[int, int]:
        """Per partition of the log, records not yet committed by the group (end offset - committed)."""

    @abc.abstractmethod
    def seek_to_committed(self) -> None:
        """Rewind every assigned partition to the group's committed position (the beginning if none)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group (calling ``on_revoke`` first) without committing anything by itself."""

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog(abc.ABC):
    """The port. Backends: ``sqlite`` (embedded default) and ``kafka``.

    Producer methods (``append``, ``dead_letter``) are safe to call from several threads.
    """

    @abc.abstractmethod
    def append(self, events: Iterable[Event | bytes], keys: Iterable[str | None] | None = None) -> int:
        """Append events durably (Kafka: acknowledged by all in-sync replicas); return how many.

        An ``Event`` is keyed by its ``user_id`` unless ``keys`` gives one key per event; raw bytes are
        appended as they are, under the matching key from ``keys`` (or none). The caller validates first:
        see ``send_events``. SQLite appends all or nothing. Kafka raises ``EventLogUnavailableError`` when
        nothing was handed to a broker, and ``AppendOutcomeUnknownError`` when events were handed over but not
        confirmed: some may be in the log, so resend them with the same ``event_id`` (counted once).
        """

    @abc.abstractmethod
    def consumer(
        self,
        group: str | None = None,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ) -> Consumer:
        """Join ``group`` (default ``log.consumer_group``); new groups start from the beginning of the log."""

    @abc.abstractmethod
    def dead_letter(self, raw: bytes, reason: str, source: tuple[int, int] | None = None) -> None:
        """Keep ``raw`` with the ``reason`` it was refused and its ``(partition, offset)`` in the log."""

    @abc.abstractmethod
    def dead_letter_records(self, letters: Sequence[tuple[Record, str]]) -> int:
        """Dead-letter records read from the log, each with its reason, at most once per (partition, offset).

        A consumer that dead-letters and then dies before it commits reads the same records again: their dead
        letters are not written twice. Returns how many were written now.
        """

    @abc.abstractmethod
    def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, oldest first."""

    @abc.abstractmethod
    def ensure_topic(self, partitions: int | None = None) -> int:
        """Create the log (and its dead-letter log) with ``partitions`` (default ``log.partitions``) if absent.

        Returns the partition count it has, which may differ from ``partitions`` when it already existed.
        """

    @abc.abstractmethod
    def end_offsets(self) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``EventLogUnavailableError`` unless the backend answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release connections. The log is unusable afterwards."""

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
