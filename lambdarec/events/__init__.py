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

Feedback types are accepted whatever ``batch.event_weights`` holds: ``dislike``, ``hide`` and ``impression``.
An impression lists the items shown, 1 to ``events.max_impression_items`` unique ids, in ``item_ids``
(``item_id`` may then be omitted and holds the first); no other type carries ``item_ids``::

    {"event_id": "e-2", "user_id": "u42", "event_type": "impression", "item_ids": ["i7", "i9", "i2"],
     "timestamp": "2026-11-29T10:15:00Z"}

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

from lambdarec.events.parse import EventRules, parse_event
from lambdarec.events.schema import (
    DEFAULT_BOUNDS,
    DISLIKE,
    FEEDBACK_TYPES,
    HIDE,
    ID_PATTERN,
    IMPRESSION,
    SCHEMA_VERSION,
    BadEvent,
    Context,
    Event,
    EventBounds,
    encode_event,
)
from lambdarec.events.wire import json_depth

__all__ = [
    "DEFAULT_BOUNDS",
    "DISLIKE",
    "FEEDBACK_TYPES",
    "HIDE",
    "ID_PATTERN",
    "IMPRESSION",
    "SCHEMA_VERSION",
    "BadEvent",
    "Context",
    "Event",
    "EventBounds",
    "EventRules",
    "encode_event",
    "json_depth",
    "parse_event",
]
