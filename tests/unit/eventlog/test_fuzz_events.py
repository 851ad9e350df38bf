"""Fuzz the event decoder and validator (issue 12): from raw bytes and from JSON values, nothing but
``BadEvent`` escapes, and every accepted event lies inside the bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings

from lambdarec.events import DEFAULT_BOUNDS, BadEvent, EventRules
from tests.fuzzing import NOW, encode, event_like, examples, json_values, wire_bytes

pytestmark = pytest.mark.fuzz
RULES = EventRules(known_types=frozenset({"view", "click", "cart", "purchase", "rating"}))


def check(raw: bytes) -> None:
    try:
        event = RULES.parse(raw, now=NOW)
    except BadEvent as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    b = DEFAULT_BOUNDS
    assert b.min_timestamp_s <= event.timestamp <= NOW + RULES.future_tolerance_s
    assert event.weight is None or (math.isfinite(event.weight) and 0 <= event.weight <= b.max_weight)
    for value in (event.event_id, event.user_id, event.item_id, event.session_id):
        assert value is None or (len(value) <= b.max_id_chars and b.id_regex.fullmatch(value))
    assert event.event_type in RULES.known_types


@settings(max_examples=examples(500), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(wire_bytes)
def test_any_bytes_are_an_event_inside_the_bounds_or_a_bad_event(raw: bytes) -> None:
    check(raw)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(json_values)
def test_any_json_value_is_an_event_or_a_bad_event(value: object) -> None:
    check(encode(value))


@settings(max_examples=examples(500), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(event_like)
def test_event_shaped_objects_are_an_event_inside_the_bounds_or_a_bad_event(value: dict) -> None:
    check(encode(value))
    check(encode(value).decode("utf-8", errors="surrogatepass"))  # str input takes the same path
