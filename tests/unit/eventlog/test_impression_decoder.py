"""The impressions consumer's bulk decoder (:class:`ImpressionDecoder`) accepts exactly what ``parse_event``
accepts, with the same values, and refuses the rest with ``parse_event``'s reason: the quick path may never let a
bad impression through nor change why one is dead-lettered."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdarec.events import BadEvent, EventBounds, EventRules
from lambdarec.events.impressions import Impression, ImpressionDecoder
from tests.fuzzing import NOW, encode, examples, ids, json_values, timestamps, wire_bytes

pytestmark = pytest.mark.fuzz
KNOWN = frozenset({"view", "click"})
RULES = EventRules(known_types=KNOWN)
TIGHT = EventRules(  # small bounds, so the limits are met often
    known_types=KNOWN,
    max_bytes=400,
    future_tolerance_s=60.0,
    bounds=EventBounds(max_weight=5.0, max_id_chars=6, max_json_depth=3, max_impression_items=3),
)

item_lists = st.lists(ids | st.sampled_from(["i1", "i2", "i3"]), max_size=5) | st.sampled_from([[], ["i1", "i1"]])
impression_like = st.fixed_dictionaries(
    {"event_id": ids, "user_id": ids, "event_type": st.sampled_from(["impression", "click", "nope", ""])},
    optional={
        "item_ids": item_lists | json_values,
        "item_id": ids | st.none() | st.sampled_from(["i1", "i9"]),
        "timestamp": timestamps | st.sampled_from([NOW - 10, NOW + 30, NOW + 120, 1e10, 1e12, 0, -5.0]),
        "weight": st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10),
        "session_id": st.none() | ids,
        "context": json_values | st.none(),
        "schema": st.integers(-1, 3),
    },
)


def outcome(rules: EventRules, raw: bytes) -> tuple:
    try:
        e = rules.parse(raw, now=NOW)
    except BadEvent as exc:
        return ("bad", exc.reason)
    return ("ok", e.event_id, e.user_id, e.event_type, e.item_ids or (e.item_id,), e.timestamp)


def decoded(decoder: ImpressionDecoder, raw: bytes) -> tuple:
    (event,), (reason,) = decoder.decode([raw], [NOW])
    if reason is not None:
        assert event is None
        return ("bad", reason)
    assert event is not None
    return ("ok", event.event_id, event.user_id, event.event_type, event.item_ids or (event.item_id,), event.timestamp)


def same(raw: bytes) -> None:
    for rules in (RULES, TIGHT):
        decoder = ImpressionDecoder(rules)
        assert decoded(decoder, raw) == outcome(rules, raw)
        assert decoded(decoder, raw) == outcome(rules, raw)  # and again, its ids now remembered as valid


@settings(max_examples=examples(600), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(impression_like)
def test_impression_shaped_records_decode_as_parse_event_decides(value: dict) -> None:
    same(encode(value))


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(wire_bytes)
def test_any_bytes_decode_as_parse_event_decides(raw: bytes) -> None:
    same(raw)


def test_a_poll_keeps_each_record_in_place_with_its_own_outcome() -> None:
    ok = {"event_id": "e1", "user_id": "u1", "event_type": "impression", "item_ids": ["i1", "i2"], "timestamp": NOW}
    raws = [
        json.dumps(ok).encode(),
        json.dumps({**ok, "item_ids": ["i1", "i1"]}).encode(),
        json.dumps({**ok, "event_type": "click", "item_id": "i1", "item_ids": None}).encode(),
        json.dumps({**ok, "timestamp": "2024-02-01T00:00:00Z", "item_id": "i2"}).encode(),
        b"not json",
    ]
    events, reasons = ImpressionDecoder(RULES).decode(raws, [NOW] * len(raws))
    assert [r is None for r in reasons] == [True, False, True, True, False]
    assert reasons[1] == "field 'item_ids' lists 'i1' more than once; list each shown item once"
    assert events[2].event_type == "click" and events[2].item_id == "i1"  # another type: parsed whole
    assert events[3].timestamp == 1706745600.0 and events[0].timestamp == NOW
    assert events[1] is None and events[4] is None
    assert isinstance(events[0], Impression) and isinstance(events[3], Impression)  # the quick path
