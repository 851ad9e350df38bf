"""Item objects as producers send them: accepted fields, defaults, upsert semantics, and refusals that name
the field."""

from __future__ import annotations

import pytest

from lambdarec.catalog.item import BadItem, Item, ItemBounds, parse_item

B = ItemBounds(max_categories=3, max_attributes=2, max_value_chars=10)


def test_a_full_object_parses_with_times_as_epoch_seconds() -> None:
    patch = parse_item(
        {
            "item_id": "i1",
            "available": False,
            "categories": ["a", "b", "a"],
            "attributes": {"brand": "x", "p": 2},
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": 1767225600000,
        },
        B,
    )
    assert patch.given() == {
        "available": False,
        "categories": ("a", "b"),
        "attributes": {"brand": "x", "p": 2},
        "created_at": 1767225600.0,
        "expires_at": 1767225600.0,
    }


def test_an_upsert_keeps_what_it_does_not_name_and_a_new_item_takes_the_defaults() -> None:
    stored = Item(item_id="i1", available=True, categories=("a",), attributes={"k": 1}, expires_at=5.0)
    after = parse_item({"item_id": "i1", "available": False, "expires_at": None}, B).apply(stored, now_s=9.0)
    assert (after.available, after.categories, after.attributes, after.expires_at) == (False, ("a",), {"k": 1}, None)
    assert after.updated_at == 9.0
    new = parse_item({"item_id": "i2"}, B).apply(None, now_s=1.0)
    assert (new.available, new.categories, new.attributes, new.expires_at) == (True, (), {}, None)


def test_to_json_gives_times_as_iso_8601() -> None:
    body = Item(item_id="i1", expires_at=1767225600.0, updated_at=1767225600.5).to_json()
    assert body["expires_at"] == "2026-01-01T00:00:00Z" and body["created_at"] is None
    assert body["updated_at"].startswith("2026-01-01T00:00:00.5")


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([], "JSON object"),
        ({}, "missing field 'item_id'"),
        ({"item_id": " i1"}, "whitespace"),
        ({"item_id": "i1", "availible": True}, "unknown field 'availible'"),
        ({"item_id": "i1", "available": "yes"}, "'available' must be true or false"),
        ({"item_id": "i1", "categories": "a"}, "list of strings"),
        ({"item_id": "i1", "categories": ["a", "b", "c", "d"]}, "serving.catalog.max_categories"),
        ({"item_id": "i1", "categories": [""]}, "non-empty string"),
        ({"item_id": "i1", "attributes": {"a": 1, "b": 2, "c": 3}}, "serving.catalog.max_attributes"),
        ({"item_id": "i1", "attributes": {"a": [1]}}, "flat"),
        ({"item_id": "i1", "attributes": {"a": True}}, "flat"),
        ({"item_id": "i1", "attributes": {"a": "x" * 11}}, "serving.catalog.max_value_chars"),
        ({"item_id": "i1", "expires_at": "tomorrow"}, "ISO-8601"),
        ({"item_id": "i1", "expires_at": -5}, "positive finite"),
    ],
)
def test_a_bad_object_is_refused_naming_the_field(obj: object, words: str) -> None:
    with pytest.raises(BadItem, match=words):
        parse_item(obj, B)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", 1e200])
def test_a_time_outside_the_years_1_to_9999_is_refused_not_stored(when: object) -> None:
    # GET /v1/items/{id} answered 500 for such an item: its time has no ISO-8601 form to give back
    with pytest.raises(BadItem, match="created_at"):
        parse_item({"item_id": "i1", "created_at": when}, ItemBounds())
