"""``send_events``: validate events and append the good ones, reporting the bad ones back to the sender.

The serving layer's ingest endpoint and ``lambdarec events send`` both use it, so a producer gets the same answer
whichever way it sends. A rejected event is not appended (its sender is told why; the dead-letter log is for bad
records found *in* the log by a consumer).

Events go to the log in batches, and each batch's outcome is recorded as a :class:`SentRange`: ``appended``
(the log confirmed it), ``unknown`` (handed to the log, not confirmed: some or all may be appended, so resend
them with the same ``event_id``, which counts once) or ``not_sent``. Sending stops at the first batch the log
does not confirm, with :class:`SendInterruptedError` carrying what was done so far.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from lambdarec.eventlog.base import AppendOutcomeUnknownError, EventLog, EventLogError
from lambdarec.events import BadEvent, Event, EventRules, encode_event

BATCH = 1000  # events per append call: bounds memory and the size of one SQLite transaction or Kafka flush
MAX_REPORTED = 1000  # rejections kept with their reason; more are only counted
Outcome = Literal["appended", "unknown", "not_sent"]


@dataclass(frozen=True)
class Rejection:
    """One refused event: its 0-based position in the input and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class SentRange:
    """What became of the inputs ``first..last`` (0-based, inclusive; rejected ones among them included)."""

    first: int
    last: int
    outcome: Outcome
    events: int  # valid events in the range
    confirmed: int  # of those, how many the log confirmed


@dataclass
class SendResult:
    """How many events were appended, how many refused, and the first ``MAX_REPORTED`` refusals.

    ``unknown`` counts events handed to the log without confirmation; ``ranges`` gives each batch's outcome.
    """

    accepted: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    unknown: int = 0
    ranges: list[SentRange] = field(default_factory=list)

    @property
    def first_unconfirmed(self) -> int | None:
        """0-based index of the first input not known to be appended (or refused), None when all were."""
        return next((r.first for r in self.ranges if r.outcome != "appended"), None)

    def to_json(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejections": [{"index": r.index, "reason": r.reason} for r in self.rejections],
        }


class SendInterruptedError(EventLogError):
    """The log failed part-way: ``result`` says what was appended, what is unknown, and where to resume.

    ``outcome_unknown`` is true when the failed batch was handed to the log without confirmation (resending it
    with the same ``event_id``s is safe), false when the log surely took none of it.
    """

    def __init__(self, result: SendResult, cause: EventLogError):
        self.result = result
        self.cause = cause
        self.outcome_unknown = isinstance(cause, AppendOutcomeUnknownError)
        super().__init__(str(cause))


def _parse(rules: EventRules, raw: bytes, clock: float) -> Event:
    try:
        return rules.parse(raw, now=clock)
    except BadEvent:
        raise
    except (ValueError, OverflowError, RecursionError, MemoryError) as exc:  # a line no rule foresaw: refuse it
        raise BadEvent(f"unreadable event ({type(exc).__name__}: {exc})") from None


def send_events(
    log: EventLog,
    events: Iterable[bytes | str | Event],
    rules: EventRules,
    *,
    now: float | None = None,
    batch: int = BATCH,
    on_batch: Callable[[SentRange], None] | None = None,
) -> SendResult:
    """Validate each event with ``rules`` and append the valid ones, keyed by ``user_id``, in input order.

    Parameters
    ----------
    log
        Where to append.
    events
        Wire bytes or str (one JSON object each) or ``Event`` objects; consumed lazily in batches.
    rules
        Known event types, size limit and future tolerance (``EventRules.from_settings``).
    now
        Wall clock for the future-timestamp check; default ``time.time()`` per batch.
    batch
        Events per append call.
    on_batch
        Called with each batch's :class:`SentRange` once its outcome is known (progress reports).

    Returns
    -------
    SendResult
        Appended and refused counts, with the reason for each refused event and each batch's outcome.

    Raises
    ------
    SendInterruptedError
        When the log fails: its ``result`` holds the batches done, the failed one (``unknown`` or ``not_sent``)
        and, as ``first_unconfirmed``, the first input to send again.

    Example
    -------
    >>> result = send_events(log, [b'{"event_id": ...}', b'not json'], rules)      # doctest: +SKIP
    >>> result.accepted, result.rejections[0].reason
    (1, 'not JSON: ...')
    """
    result = SendResult()
    numbered = enumerate(events)
    while chunk := list(itertools.islice(numbered, batch)):
        clock = time.time() if now is None else now
        raws: list[bytes] = []
        keys: list[str] = []
        for index, item in chunk:
            raw = encode_event(item) if isinstance(item, Event) else item
            raw = raw.encode() if isinstance(raw, str) else bytes(raw)
            try:
                event = _parse(rules, raw, clock)
            except BadEvent as exc:
                result.rejected += 1
                if len(result.rejections) < MAX_REPORTED:
                    result.rejections.append(Rejection(index, exc.reason))
                continue
            raws.append(raw)  # the original bytes: lossless, and consumers parse with the same rules
            keys.append(event.user_id)
        first, last = chunk[0][0], chunk[-1][0]
        try:
            appended = log.append(raws, keys) if raws else 0
        except EventLogError as exc:
            unknown = isinstance(exc, AppendOutcomeUnknownError)
            confirmed = exc.confirmed if isinstance(exc, AppendOutcomeUnknownError) else 0
            sent = SentRange(first, last, "unknown" if unknown else "not_sent", len(raws), confirmed)
            result.ranges.append(sent)
            result.unknown += len(raws) - confirmed if unknown else 0
            if on_batch is not None:
                on_batch(sent)
            raise SendInterruptedError(result, exc) from exc
        result.accepted += appended
        sent = SentRange(first, last, "appended", len(raws), appended)
        result.ranges.append(sent)
        if on_batch is not None:
            on_batch(sent)
    return result
