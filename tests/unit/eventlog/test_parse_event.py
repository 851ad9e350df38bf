"""parse_event: every reason an event is refused, and the forms of timestamp it accepts."""

from __future__ import annotations

import json

import pytest

from lambdarec.events import BadEvent, Event, EventRules, encode_event, parse_event
from lambdarec.settings import Settings

NOW = 1_764_400_000.0  # 2025-11-29T07:06:40Z
KNOWN = {"view", "click", "cart", "purchase", "rating"}


def wire(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "click",
        "timestamp": NOW,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def parse(raw: bytes | str, **kw: object) -> Event:
    opts: dict[str, object] = {"known_types": KNOWN, "max_bytes": 16384, "now": NOW, "future_tolerance_s": 300.0}
    opts.update(kw)
    return parse_event(raw, **opts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2025-11-29T07:06:40Z", NOW),
        ("2025-11-29T08:06:40.250+01:00", NOW + 0.25),
        ("2025-11-29T07:06:40", NOW),  # naive: read as UTC
        (1_764_400_000, NOW),  # epoch seconds
        (1_764_399_999.5, NOW - 0.5),
        (1_764_400_000_123, NOW + 0.123),  # epoch milliseconds
        (1_764_400_000_123_456, NOW + 0.123456),  # microseconds, as the batch layer's "auto" rule
    ],
)
def test_timestamps_normalise_to_float_epoch_seconds(stamp: object, seconds: float) -> None:
    ev = parse(wire(timestamp=stamp))
    assert ev.timestamp == pytest.approx(seconds, abs=1e-6)
    assert isinstance(ev.timestamp, float)


def test_a_full_event_keeps_every_field_and_round_trips() -> None:
    raw = wire(weight=2.5, session_id="s1", context={"page": "home", "pos": 3, "score": 0.5}, extra="ignored")
    ev = parse(raw)
    assert ev == Event(
        event_id="e1",
        user_id="u1",
        item_id="i1",
        event_type="click",
        timestamp=NOW,
        weight=2.5,
        session_id="s1",
        context={"page": "home", "pos": 3, "score": 0.5},
        schema=1,
    )
    assert parse(encode_event(ev)) == ev
    assert ev.timestamp_ms == int(NOW * 1000)


def test_optional_fields_default_and_zero_weight_is_fine() -> None:
    ev = parse(wire(weight=0))
    assert (ev.weight, ev.session_id, ev.context, ev.schema) == (0.0, None, {}, 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not a JSON object (got array)"),
        (b'"text"', "not a JSON object (got str)"),
        (wire(user_id=...), "missing field 'user_id'"),
        (wire(event_id=...), "missing field 'event_id'"),
        (wire(timestamp=...), "missing field 'timestamp'"),
        (wire(user_id=42), "field 'user_id' has wrong type: expected str, got int"),
        (wire(item_id=None), "field 'item_id' has wrong type: expected str, got null"),
        (wire(timestamp=True), "field 'timestamp' has wrong type"),
        (wire(weight="1"), "field 'weight' has wrong type"),
        (wire(context=["a"]), "field 'context' has wrong type: expected object, got array"),
        (wire(context={"a": [1]}), "a value of field 'context' has wrong type"),
        (wire(schema="1"), "field 'schema' has wrong type"),
        (wire(user_id=""), "field 'user_id' must not be empty"),
        (
            wire(event_type="like"),
            "unknown event_type 'like'; known: cart, click, dislike, hide, impression, purchase, rating, view",
        ),
        (wire(weight=-0.5), "negative weight -0.5"),
        (wire(timestamp=NOW + 301), "s in the future (tolerance 300 s"),
        (wire(timestamp="2026-13-01T00:00:00Z"), "field 'timestamp' '2026-13-01T00:00:00Z' is not an ISO-8601"),
        (wire(timestamp="yesterday"), "is not an ISO-8601"),
        (wire(timestamp=0), "is not after 1970-01-01"),
        (wire(timestamp=-5), "is not after 1970-01-01"),
        (wire(schema=2), "field 'schema' is 2; this reader supports 1..1"),
    ],
)
def test_bad_events_are_refused_with_a_precise_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadEvent) as info:
        parse(raw)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason


def test_oversized_events_name_their_size_and_the_limit() -> None:
    raw = wire(context={"blob": "x" * 500})
    with pytest.raises(BadEvent, match=rf"event is {len(raw)} bytes > limit 256"):
        parse(raw, max_bytes=256)
    assert parse(raw, max_bytes=len(raw)).user_id == "u1"  # exactly at the limit is fine


def test_future_tolerance_is_inclusive_and_configurable() -> None:
    assert parse(wire(timestamp=NOW + 300)).timestamp == NOW + 300
    with pytest.raises(BadEvent, match="in the future"):
        parse(wire(timestamp=NOW + 1), future_tolerance_s=0)


def test_known_types_none_accepts_any_type_and_str_input_is_fine() -> None:
    assert parse(wire(event_type="like").decode(), known_types=None).event_type == "like"


def test_rules_from_settings_use_event_weights_size_and_tolerance() -> None:
    settings = Settings.load(
        overrides={
            "batch": {"event_weights": {"play": 1.0}},
            "log": {"max_event_bytes": 300},
            "speed": {"future_tolerance_s": 5.0},
        }
    )
    rules = EventRules.from_settings(settings)
    assert rules == EventRules(known_types=frozenset({"play"}), max_bytes=300, future_tolerance_s=5.0)
    assert rules.parse(wire(event_type="play"), now=NOW).event_type == "play"
    with pytest.raises(BadEvent, match="unknown event_type 'click'; known: dislike, hide, impression, play"):
        rules.parse(wire(), now=NOW)
