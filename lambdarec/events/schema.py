"""The interaction event as the system keeps it (``Event``), the reason one is refused (``BadEvent``), the ranges
its values must lie in (``EventBounds``) and its wire bytes (``encode_event``). Parsing is in
:mod:`lambdarec.events.parse`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from lambdarec.settings import Settings

SCHEMA_VERSION = 1
# An id: no control character, not blank, no leading or trailing whitespace (``events.id_pattern``'s default).
ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"

Context = dict[str, str | int | float]

# Feedback event types, accepted whatever ``batch.event_weights`` holds: the user said "not this" (``dislike``),
# "never this" (``hide``), or a list of items was shown (``impression``, the only type that carries ``item_ids``).
DISLIKE, HIDE, IMPRESSION = "dislike", "hide", "impression"
FEEDBACK_TYPES = frozenset({DISLIKE, HIDE, IMPRESSION})


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
    item_ids: tuple[str, ...] = ()  # an impression's shown items, unique, in the order shown; () for other types

    @property
    def timestamp_ms(self) -> int:
        """Event time in integer epoch milliseconds."""
        return round(self.timestamp * 1000)


@dataclass(frozen=True)
class EventBounds:
    """The range each value of an event must lie in (``events.*`` settings); defaults match the settings'."""

    max_weight: float = 1000.0
    min_timestamp_s: float = 631152000.0  # 1990-01-01T00:00:00Z
    max_id_chars: int = 256
    id_pattern: str = ID_PATTERN
    max_json_depth: int = 8
    max_impression_items: int = 100

    @property
    def id_regex(self) -> re.Pattern[str]:
        return _compiled(self.id_pattern)

    @functools.cached_property
    def good_ids(self) -> dict[str, None]:
        """Ids that passed these bounds' checks, kept by the parser (bounded), so a repeating one is checked once.
        On the instance (a frozen dataclass's hash of its six fields, per event, cost as much as the checks)."""
        return {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EventBounds:
        e = settings.events
        return cls(
            e.max_weight, e.min_timestamp_s, e.max_id_chars, e.id_pattern, e.max_json_depth, e.max_impression_items
        )


DEFAULT_BOUNDS = EventBounds()


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_ENCODER = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    """The wire bytes of ``event``: one compact JSON object, timestamp in epoch seconds."""
    return _ENCODER.encode(event)
