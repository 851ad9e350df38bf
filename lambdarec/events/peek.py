"""A look at one field of an event on the wire without parsing it: enough to route or skip it.

Example
-------
>>> is_impression(b'{"event_type": "impression", "user_id": "u1", "item_ids": ["i1"]}')
True
>>> is_impression(b'{"event_type": "click", "user_id": "u1", "item_id": "i1"}')
False
"""

from __future__ import annotations

import msgspec

from lambdarec.events.schema import IMPRESSION

_MARK = IMPRESSION.encode()


class _EventType(msgspec.Struct):
    event_type: str = ""


_peek = msgspec.json.Decoder(_EventType).decode


def is_impression(raw: bytes) -> bool:
    """Whether the wire event ``raw`` is an ``impression`` (by its ``event_type`` alone: one substring test, then a
    decode of that field). A record that does not decode is not: whoever parses it whole refuses it with the reason."""
    if _MARK not in raw:
        return False
    try:
        return _peek(raw).event_type == IMPRESSION
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
