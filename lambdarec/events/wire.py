"""The wire form of an event: one JSON object, decoded with its fields typed, or refused with a reason that names
the field (``BadEvent``). The rules on values (ranges, ids, types) are checked by
:func:`lambdarec.events.parse.parse_event`.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
import numpy as np

from lambdarec.events.schema import SCHEMA_VERSION, BadEvent, Context

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class WireEvent(msgspec.Struct, kw_only=True, frozen=True):
    """What the JSON may hold, before the timestamp is normalised and the rules are checked."""

    event_id: _NonEmpty
    user_id: _NonEmpty
    item_id: _NonEmpty | msgspec.UnsetType = msgspec.UNSET  # required, except for an impression with `item_ids`
    event_type: _NonEmpty
    timestamp: str | float
    weight: float | None = None
    session_id: str | None = None
    context: Context = msgspec.field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    item_ids: list[_NonEmpty] | None = None


_DECODER = msgspec.json.Decoder(WireEvent)
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


def decode_wire(data: bytes, max_json_depth: int) -> WireEvent:
    """The JSON object in ``data`` with its fields typed; ``BadEvent`` naming the problem otherwise (nested deeper
    than ``max_json_depth``, not JSON, not an object, a missing field, a field of the wrong type or empty)."""
    # nesting is at most the number of opening brackets: most events (an impression's list too) skip the scan
    if data.count(b"[") + data.count(b"{") > max_json_depth and (depth := json_depth(data)) > max_json_depth:
        raise BadEvent(f"event is nested {depth} deep > limit {max_json_depth} (events.max_json_depth)")
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise BadEvent(_explain(exc)) from None
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from None
