"""``send_events``: validate events and append the good ones, reporting the bad ones back to the sender.

The serving layer's ingest endpoint and ``lambdarec events send`` both use it, so a producer gets the same answer
whichever way it sends. A rejected event is not appended (its sender is told why; the dead-letter log is for bad
records found *in* the log by a consumer).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from lambdarec.events import BadEvent, Event, EventRules, encode_event
from lambdarec.log.base import EventLog

BATCH = 1000  # events per append call: bounds memory and the size of one SQLite transaction or Kafka flush
MAX_REPORTED = 1000  # rejections kept with their reason; more are only counted


@dataclass(frozen=True)
class Rejection:
    """One refused event: its 0-based position in the input and why."""

    index: int
    reason: str


@dataclass
class SendResult:
    """How many events were appended, how many refused, and the first ``MAX_REPORTED`` refusals."""

    accepted: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejections": [{"index": r.index, "reason": r.reason} for r in self.rejections],
        }


def send_events(
    log: EventLog,
    events: Iterable[bytes | str | Event],
    rules: EventRules,
    *,
    now: float | None = None,
    batch: int = BATCH,
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

    Returns
    -------
    SendResult
        Appended and refused counts, with the reason for each refused event.

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
                event = rules.parse(raw, now=clock)
            except BadEvent as exc:
                result.rejected += 1
                if len(result.rejections) < MAX_REPORTED:
                    result.rejections.append(Rejection(index, exc.reason))
                continue
            raws.append(raw)  # the original bytes: lossless, and consumers parse with the same rules
            keys.append(event.user_id)
        if raws:
            result.accepted += log.append(raws, keys)
    return result
