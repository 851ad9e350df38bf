"""The interaction event: its wire format and the one function that validates it.

On the wire an event is one JSON object per message (one line in a file, one Kafka record, one element of an
ingest request)::

    {"event_id": "e-1", "user_id": "u42", "item_id": "i7", "event_type": "click",
     "timestamp": "2026-11-29T10:15:00Z", "weight": 1.0, "session_id": "s9",
     "context": {"page": "home", "position": 3}, "schema": 1}

``timestamp`` is the event time (not the time it reached the log). It may be an ISO-8601 date-time string (an
offset or ``Z``; a naive one is read as UTC) or an epoch number whose unit is told by its size, the same rule as
the batch layer's ``timestamp_unit = "auto"``: below ``1e11`` seconds (up to the year 5138), below ``1e14``
milliseconds (from 1973-03-03), below ``1e17`` microseconds, else nanoseconds. After ``parse_event`` it is always
float epoch seconds, UTC.

Unknown fields are ignored so a newer producer can add fields without breaking older readers; a ``schema``
newer than ``SCHEMA_VERSION`` is refused.

Example
-------
>>> ev = parse_event(b'{"event_id":"e1","user_id":"u1","item_id":"i1","event_type":"view",'
...                  b'"timestamp":1764400000000}', known_types={"view"}, now=1764400000.0)
>>> ev.timestamp
1764400000.0
>>> parse_event(b'{"event_id":"e1"}', known_types={"view"})
Traceback (most recent call last):
...
lambdarec.events.BadEvent: missing field 'user_id'
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import msgspec
import numpy as np

if TYPE_CHECKING:
    from lambdarec.settings import Settings

SCHEMA_VERSION = 1
# An epoch number's unit by its size: (upper bound, divisor to seconds); the batch layer's "auto" rule.
_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (math.inf, 1e9))
# An id: no control character, not blank, no leading or trailing whitespace (``events.id_pattern``'s default).
ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
_MAX_EPOCH_S = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a date-time can hold

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Context = dict[str, str | int | float]


class BadEvent(ValueError):
    """An event that cannot be accepted; ``reason`` says precisely why, naming the field."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """One validated interaction. ``timestamp`` is event time in float epoch seconds, UTC."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    weight: float | None = None
    session_id: str | None = None
    context: Context = msgspec.field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @property
    def timestamp_ms(self) -> int:
        """Event time in integer epoch milliseconds."""
        return round(self.timestamp * 1000)


class _WireEvent(msgspec.Struct, kw_only=True, frozen=True):
    """What the JSON may hold, before the timestamp is normalised and the rules are checked."""

    event_id: _NonEmpty
    user_id: _NonEmpty
    item_id: _NonEmpty
    event_type: _NonEmpty
    timestamp: str | float
    weight: float | None = None
    session_id: str | None = None
    context: Context = msgspec.field(default_factory=dict)
    schema: int = SCHEMA_VERSION


_DECODER = msgspec.json.Decoder(_WireEvent)
_ENCODER = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?P<rest>.*?)(?:, got `(?P<got>[^`]+)`)?$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def _field_name(path: str) -> str:
    """``user_id`` -> ``field 'user_id'``; ``context[...]`` -> ``a value of field 'context'``."""
    name, _, rest = path.partition("[")
    return f"a value of field '{name}'" if rest else f"field '{name}'"


def _explain(exc: msgspec.ValidationError) -> str:
    """msgspec's message rewritten as a reason naming the field."""
    m = _AT.match(str(exc))
    what, path = (m["what"], m["path"] or "") if m else (str(exc), "")
    if missing := _MISSING.match(what):
        inner = f"{path}." if path else ""
        return f"missing field '{inner}{missing['field']}'"
    field = _field_name(path)
    if not path:
        if exp := _EXPECTED.match(what):
            return f"not a JSON object (got {exp['got'] or 'something else'})"
        return f"invalid event: {what}"
    if exp := _EXPECTED.match(what):
        if exp["rest"].startswith(" of length >= 1"):
            return f"{field} must not be empty"
        got = f", got {exp['got']}" if exp["got"] else ""
        return f"{field} has wrong type: expected {exp['want']}{got}"
    return f"{field} is invalid: {what}"


_DEPTH_COUNTED = frozenset(b"[]{}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _DEPTH_COUNTED)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``data`` (brackets inside strings do not count).

    Cheap enough to run before every decode: the JSON decoder recurses, so a deep document must be refused
    before it is decoded.

    Example
    -------
    >>> json_depth(b'{"a": [1, {"b": "[["}]}')
    3
    """
    opening = data.count(b"[") + data.count(b"{")
    if opening <= 1:
        return opening
    brackets = np.frombuffer(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS), dtype=np.uint8)
    steps = np.where((brackets == 0x5B) | (brackets == 0x7B), 1, -1)  # vectorised: a 1 MB body of '[' is cheap
    return int(max(np.cumsum(steps).max(initial=0), 0))


@dataclass(frozen=True)
class EventBounds:
    """The range each value of an event must lie in (``events.*`` settings); defaults match the settings'."""

    max_weight: float = 1000.0
    min_timestamp_s: float = 631152000.0  # 1990-01-01T00:00:00Z
    max_id_chars: int = 256
    id_pattern: str = ID_PATTERN
    max_json_depth: int = 8

    @property
    def id_regex(self) -> re.Pattern[str]:
        return _compiled(self.id_pattern)

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBounds:
        e = settings.events
        return cls(e.max_weight, e.min_timestamp_s, e.max_id_chars, e.id_pattern, e.max_json_depth)


DEFAULT_BOUNDS = EventBounds()


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


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
        seconds = next(value / div for bound, div in _UNITS if abs(value) < bound)
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


def _check_id(name: str, value: str | None, bounds: EventBounds) -> None:
    if value is None:
        return
    if len(value) > bounds.max_id_chars:
        raise BadEvent(f"field '{name}' is {len(value)} characters > limit {bounds.max_id_chars} (events.max_id_chars)")
    if bounds.id_regex.fullmatch(value) is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        if bounds.id_pattern == DEFAULT_BOUNDS.id_pattern:
            why = "is blank or has a control character or leading or trailing whitespace"
        else:
            why = f"does not match events.id_pattern {bounds.id_pattern!r}"
        raise BadEvent(f"field '{name}' {shown!r} {why}")


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
        The accepted ``event_type`` values (``batch.event_weights`` keys); None accepts any.
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
    if (depth := json_depth(data)) > bounds.max_json_depth:
        raise BadEvent(f"event is nested {depth} deep > limit {bounds.max_json_depth} (events.max_json_depth)")
    try:
        wire = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise BadEvent(_explain(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    if known_types is not None and wire.event_type not in known_types:
        raise BadEvent(f"unknown event_type {wire.event_type!r}; known: {', '.join(sorted(known_types))}")
    if wire.schema < 1 or wire.schema > SCHEMA_VERSION:
        raise BadEvent(f"field 'schema' is {wire.schema}; this reader supports 1..{SCHEMA_VERSION}")
    for name in ("event_id", "user_id", "item_id", "session_id"):
        _check_id(name, getattr(wire, name), bounds)
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
        item_id=wire.item_id,
        event_type=wire.event_type,
        timestamp=seconds,
        weight=wire.weight,
        session_id=wire.session_id,
        context=wire.context,
        schema=wire.schema,
    )


def encode_event(event: Event) -> bytes:
    """The wire bytes of ``event``: one compact JSON object, timestamp in epoch seconds."""
    return _ENCODER.encode(event)


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
        """Known types from ``batch.event_weights``, size from ``log``, tolerance from ``speed``, bounds from
        ``events``."""
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
