"""Bounded event values (issue 12, findings 1, 4 and 14): each out-of-range value is refused with a reason."""

from __future__ import annotations

import json

import pytest

from lambdarec.events import BadEvent, EventBounds, EventRules, json_depth, parse_event
from lambdarec.settings import Settings

NOW = 1_764_400_000.0
KNOWN = frozenset({"view", "click"})


def raw(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "click"}
    base["timestamp"] = NOW
    base.update(fields)
    return json.dumps(base).encode()


def parse(data: bytes | str, max_bytes: int = 16384, **bounds: object):
    return parse_event(data, known_types=KNOWN, now=NOW, max_bytes=max_bytes, bounds=EventBounds(**bounds))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (raw(weight=1e308), "field 'weight' 1e+308 is above the limit 1000 (events.max_weight)"),
        (raw(weight=1001), "above the limit 1000"),
        (raw(timestamp=1e30), "field 'timestamp' 1e+30 is out of range"),
        (raw(timestamp=1e300), "field 'timestamp' 1e+300 is out of range"),
        (
            b'{"event_id":"e","user_id":"u","item_id":"i","event_type":"view","timestamp":' + b"1" * 30 + b"}",
            "out of range",
        ),
        (raw(timestamp="9999-12-31T23:59:59+00:00"), "in the future"),
        (raw(timestamp="0001-01-01T00:00:00-01:00"), "field 'timestamp' '0001-01-01T00:00:00-01:00' is not after 1970"),
        (raw(timestamp=631152000 - 1), "before 1990-01-01T00:00:00+00:00 (events.min_timestamp_s)"),
        (raw(user_id="   "), "field 'user_id' '   ' is blank or has a control character"),
        (raw(item_id="a\nb"), "field 'item_id'"),
        (raw(event_id=" e1"), "field 'event_id'"),
        (raw(session_id="\t"), "field 'session_id'"),
        (raw(user_id="u" * 257), "field 'user_id' is 257 characters > limit 256 (events.max_id_chars)"),
        (raw(extra=json.loads("[" * 20 + "]" * 20)), "nested 21 deep > limit 8 (events.max_json_depth)"),
    ],
)
def test_out_of_range_values_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadEvent) as info:
        parse(data)
    assert reason in info.value.reason


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_deeply_nested_json_is_a_bad_event_not_a_recursion_error(depth: int) -> None:
    deep = b"[" * depth + b"]" * depth
    for data in (deep, raw()[:-1] + b', "x": ' + deep + b"}", raw()[:-1] + b', "context": {"a": ' + deep + b"}}"):
        with pytest.raises(BadEvent, match="nested"):
            parse(data, max_bytes=1 << 20, max_json_depth=8)


def test_values_inside_the_bounds_pass() -> None:
    ev = parse(raw(weight=1000, user_id="user with inner spaces", timestamp=946684800 + 1, context={"a": 1}))
    assert (ev.weight, ev.user_id) == (1000.0, "user with inner spaces")


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[", "b": [1, {"c": [2]}]}') == 4
    assert json_depth(b'"\\"[[["') == 0
    assert json_depth(b"[" * 50 + b"]" * 50) == 50


def test_bounds_come_from_settings() -> None:
    s = Settings.load(
        overrides={
            "events": {"max_weight": 5, "min_timestamp_s": 10, "max_id_chars": 4, "max_json_depth": 3},
        }
    )
    rules = EventRules.from_settings(s)
    assert rules.bounds == EventBounds(max_weight=5.0, min_timestamp_s=10.0, max_id_chars=4, max_json_depth=3)
    with pytest.raises(BadEvent, match=r"events\.max_weight"):
        rules.parse(raw(weight=6), now=NOW)
    with pytest.raises(BadEvent, match=r"events\.max_id_chars"):
        rules.parse(raw(user_id="u1234"), now=NOW)


def test_an_id_accepted_under_loose_bounds_is_still_refused_under_strict_ones() -> None:
    loose, strict = EventBounds(), EventBounds(max_id_chars=8, id_pattern=r"^[a-z0-9]+$")
    for _ in range(2):  # the second time the ids are remembered as valid under the loose bounds
        assert (
            parse_event(raw(user_id="user-000001"), known_types=KNOWN, now=NOW, bounds=loose).user_id == "user-000001"
        )
    with pytest.raises(BadEvent, match="field 'user_id' is 11 characters > limit 8"):
        parse_event(raw(user_id="user-000001"), known_types=KNOWN, now=NOW, bounds=strict)
    with pytest.raises(BadEvent, match=r"field 'item_id' 'i-1' does not match events\.id_pattern"):
        parse_event(raw(item_id="i-1"), known_types=KNOWN, now=NOW, bounds=strict)
    for _ in range(2):  # a refused id is never remembered
        with pytest.raises(BadEvent, match="field 'event_id' ' e' is blank or has a control character"):
            parse_event(raw(event_id=" e"), known_types=KNOWN, now=NOW, bounds=loose)


@pytest.mark.parametrize(("timestamp", "seconds"), [(NOW, NOW), (NOW * 1e3, NOW), (NOW * 1e6, NOW), (NOW * 1e9, NOW)])
def test_an_epoch_number_is_read_in_the_unit_its_size_tells(timestamp: float, seconds: float) -> None:
    assert parse(raw(timestamp=timestamp)).timestamp == pytest.approx(seconds)
