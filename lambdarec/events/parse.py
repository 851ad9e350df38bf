"""Parsing an event: ``parse_event`` decodes and validates one from its wire bytes, ``EventRules`` bundles the
rules from settings. The wire format is described in :mod:`lambdarec.events`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import msgspec

from lambdarec.events.schema import (
    DEFAULT_BOUNDS,
    FEEDBACK_TYPES,
    IMPRESSION,
    SCHEMA_VERSION,
    BadEvent,
    Event,
    EventBounds,
)
from lambdarec.events.wire import decode_wire

if TYPE_CHECKING:
    from lambdarec.settings import Settings

# An epoch number's unit is told by its size as the batch layer's "auto" rule does: below 1e11 seconds, below
# 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
_MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a date-time can hold


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _epoch_seconds(value: str | float, bounds: EventBounds, latest: float, tolerance_s: float) -> float:
    """Normalise an ISO-8601 string or an epoch number to float epoch seconds within
    ``[bounds.min_timestamp_s, latest]``; BadEvent naming the bound otherwise."""
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise BadEvent(
                f"field 'timestamp' {value!r} is not an ISO-8601 date-time (e.g. 2026-11-29T10:15:00Z) "
                "or an epoch number"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        try:
            seconds = dt.timestamp()
        except (OverflowError, ValueError, OSError):
            raise BadEvent(f"field 'timestamp' {value!r} is out of range") from None
    else:
        if not math.isfinite(value):
            raise BadEvent(f"field 'timestamp' {value} is not a finite number")
        size = abs(value)
        seconds = value if size < 1e11 else value / 1e3 if size < 1e14 else value / 1e6 if size < 1e17 else value / 1e9
        if seconds > _MAX_EPOCH_S:  # nanoseconds past the year 9999: no date-time holds it
            raise BadEvent(f"field 'timestamp' {value:g} is out of range (not a date before the year 10000)")
    if seconds <= 0:
        raise BadEvent(f"field 'timestamp' {value!r} is not after 1970-01-01T00:00:00Z")
    if seconds < bounds.min_timestamp_s:
        raise BadEvent(f"field 'timestamp' {value!r} is before {_iso(bounds.min_timestamp_s)} (events.min_timestamp_s)")
    if seconds > latest:
        raise BadEvent(
            f"timestamp {_iso(seconds)} is {seconds - (latest - tolerance_s):.0f} s in the future "
            f"(tolerance {tolerance_s:g} s, speed.future_tolerance_s)"
        )
    return seconds


def _check_id(name: str, value: str | None, bounds: EventBounds, good: dict[str, None], remember: bool = True) -> None:
    """``BadEvent`` unless ``value`` is a valid id under ``bounds``. ``good``: ``bounds.good_ids``, the ids that
    passed before (item and user ids repeat across events, most of all in impressions), checked once;
    ``remember=False`` for ids that do not repeat (event ids), which would only push the repeating ones out."""
    if value is None or value in good:
        return
    if len(value) > bounds.max_id_chars or bounds.id_regex.fullmatch(value) is None:
        _refuse_id(name, value, bounds)
    if remember:
        if len(good) >= _GOOD_IDS_KEPT:  # bounded: start again rather than grow
            good.clear()
        good[value] = None


_GOOD_IDS_KEPT = 1024  # ids remembered as valid per bounds: the popular head; small, so memory stays flat


def _refuse_id(name: str, value: str, bounds: EventBounds) -> NoReturn:
    if len(value) > bounds.max_id_chars:
        raise BadEvent(f"field '{name}' is {len(value)} characters > limit {bounds.max_id_chars} (events.max_id_chars)")
    shown = value if len(value) <= 40 else value[:40] + "..."
    if bounds.id_pattern == DEFAULT_BOUNDS.id_pattern:
        why = "is blank or has a control character or leading or trailing whitespace"
    else:
        why = f"does not match events.id_pattern {bounds.id_pattern!r}"
    raise BadEvent(f"field '{name}' {shown!r} {why}")


def _shown_items(
    item_id: str | None, item_ids: list[str] | None, event_type: str, bounds: EventBounds, good: dict[str, None]
) -> tuple[str, tuple[str, ...]]:
    """``(item_id, item_ids)`` of an event: an impression lists 1..``max_impression_items`` unique ids (``item_id``
    then defaults to the first and must be one of them); any other type has one ``item_id`` and no list."""
    if event_type != IMPRESSION:
        if item_ids:  # an empty list is as absent
            raise BadEvent(f"field 'item_ids' is only for event_type {IMPRESSION!r}, not {event_type!r}")
        if item_id is None:
            raise BadEvent("missing field 'item_id'")
        _check_id("item_id", item_id, bounds, good)
        return item_id, ()
    shown = [item_id] if item_ids is None and item_id is not None else (item_ids or [])
    if not shown:
        raise BadEvent("an impression needs field 'item_ids' (the items shown, at least one) or 'item_id'")
    if len(shown) > bounds.max_impression_items:
        raise BadEvent(
            f"field 'item_ids' lists {len(shown)} items > limit {bounds.max_impression_items} "
            "(events.max_impression_items)"
        )
    if len(set(shown)) != len(shown):
        repeated = next(i for n, i in enumerate(shown) if i in shown[:n])
        raise BadEvent(f"field 'item_ids' lists {repeated!r} more than once; list each shown item once")
    for n, shown_id in enumerate(shown):
        _check_id(f"item_ids[{n}]", shown_id, bounds, good)
    if item_id is not None and item_id not in shown:
        raise BadEvent(f"field 'item_id' {item_id!r} is not in field 'item_ids'; omit it or name a shown item")
    return item_id if item_id is not None else shown[0], tuple(shown)


def parse_event(
    raw: bytes | str,
    *,
    known_types: Collection[str] | None = None,
    max_bytes: int = 16384,
    now: float | None = None,
    future_tolerance_s: float = 300.0,
    bounds: EventBounds = DEFAULT_BOUNDS,
) -> Event:
    """Decode and validate one event from its wire bytes.

    Parameters
    ----------
    raw
        One JSON object (UTF-8 bytes, or a str).
    known_types
        The accepted ``event_type`` values (``batch.event_weights`` keys) besides the feedback types ``dislike``,
        ``hide`` and ``impression``, which are always accepted; None accepts any.
    max_bytes
        Largest accepted encoded size (``log.max_event_bytes``).
    now
        Wall-clock epoch seconds to compare the event time with; default ``time.time()``.
    future_tolerance_s
        How far past ``now`` an event time may lie (``speed.future_tolerance_s``).
    bounds
        The ranges of weight, timestamp, ids and nesting depth (``events.*``).

    Returns
    -------
    Event
        With ``timestamp`` in float epoch seconds.

    Raises
    ------
    BadEvent
        With a reason naming the problem: not JSON, not an object, nested too deep, a missing field, a field of
        the wrong type or empty, an id too long or blank, an unknown event type, an oversized event, a timestamp
        out of range or unreadable, a weight out of range, an unsupported schema version. Nothing else escapes.
    """
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise BadEvent(f"event is {len(data)} bytes > limit {max_bytes} (log.max_event_bytes)")
    wire = decode_wire(data, bounds.max_json_depth)
    if known_types is not None and wire.event_type not in known_types and wire.event_type not in FEEDBACK_TYPES:
        known = ", ".join(sorted({*known_types, *FEEDBACK_TYPES}))
        raise BadEvent(f"unknown event_type {wire.event_type!r}; known: {known}")
    if wire.schema < 1 or wire.schema > SCHEMA_VERSION:
        raise BadEvent(f"field 'schema' is {wire.schema}; this reader supports 1..{SCHEMA_VERSION}")
    good = bounds.good_ids
    _check_id("event_id", wire.event_id, bounds, good, remember=False)
    _check_id("user_id", wire.user_id, bounds, good)
    _check_id("session_id", wire.session_id, bounds, good)
    given = None if wire.item_id is msgspec.UNSET else wire.item_id
    item_id, item_ids = _shown_items(given, wire.item_ids, wire.event_type, bounds, good)
    if wire.weight is not None:
        if not math.isfinite(wire.weight):
            raise BadEvent(f"field 'weight' {wire.weight} is not a finite number")
        if wire.weight < 0:
            raise BadEvent(f"negative weight {wire.weight}; field 'weight' must be >= 0")
        if wire.weight > bounds.max_weight:
            raise BadEvent(
                f"field 'weight' {wire.weight:g} is above the limit {bounds.max_weight:g} (events.max_weight)"
            )
    now = time.time() if now is None else now
    seconds = _epoch_seconds(wire.timestamp, bounds, now + future_tolerance_s, future_tolerance_s)
    return Event(
        event_id=wire.event_id,
        user_id=wire.user_id,
        item_id=item_id,
        event_type=wire.event_type,
        timestamp=seconds,
        weight=wire.weight,
        session_id=wire.session_id,
        context=wire.context,
        schema=wire.schema,
        item_ids=item_ids,
    )


@dataclass(frozen=True)
class EventRules:
    """The validation rules from settings, bundled so callers pass one object.

    Example
    -------
    >>> rules = EventRules.from_settings(Settings.load())      # doctest: +SKIP
    >>> rules.parse(line)                                       # doctest: +SKIP
    """

    known_types: frozenset[str] | None
    max_bytes: int = 16384
    future_tolerance_s: float = 300.0
    bounds: EventBounds = DEFAULT_BOUNDS

    @classmethod
    def from_settings(cls, settings: Settings) -> EventRules:
        """Known types from ``batch.event_weights`` (the feedback types are always known), size from ``log``,
        tolerance from ``speed``, bounds from ``events``."""
        return cls(
            known_types=frozenset(settings.batch.event_weights),
            max_bytes=settings.log.max_event_bytes,
            future_tolerance_s=settings.speed.future_tolerance_s,
            bounds=EventBounds.from_settings(settings),
        )

    def parse(self, raw: bytes | str, now: float | None = None) -> Event:
        """``parse_event`` with these rules."""
        return parse_event(
            raw,
            known_types=self.known_types,
            max_bytes=self.max_bytes,
            now=now,
            future_tolerance_s=self.future_tolerance_s,
            bounds=self.bounds,
        )
