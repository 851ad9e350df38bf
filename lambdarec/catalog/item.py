"""A catalog item as the system keeps it (``Item``), an upsert of some of its fields (``ItemPatch``), and the
parsing of the JSON objects that producers send (``parse_item``), with the bounds of ``serving.catalog``.

An upsert names the item and the fields it sets; fields it leaves out keep their stored values (a new item takes
the defaults: available, no categories, no attributes, no dates). ``expires_at: null`` clears the expiry.

Example
-------
>>> patch = parse_item({"item_id": "i7", "available": False}, ItemBounds())
>>> patch.apply(None, now_s=1.0).available
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from lambdarec.events import DEFAULT_BOUNDS, EventBounds

AttributeValue = str | int | float
FIRST_S, LAST_S = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31T23:59:59, UTC
FIELDS = ("available", "categories", "attributes", "created_at", "expires_at")


class BadItem(ValueError):
    """An item object that cannot be accepted; ``reason`` names the field and what would be right."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Item(msgspec.Struct, kw_only=True, frozen=True):
    """One item of the catalog; times are epoch seconds (UTC), ``updated_at`` the last upsert's."""

    item_id: str
    available: bool = True
    categories: tuple[str, ...] = ()
    attributes: dict[str, AttributeValue] = msgspec.field(default_factory=dict)
    created_at: float | None = None
    expires_at: float | None = None
    updated_at: float = 0.0

    def expired(self, now_s: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now_s

    def to_json(self) -> dict[str, Any]:
        """The object ``GET /v1/items/{item_id}`` returns: times as ISO-8601 UTC."""
        return {
            "item_id": self.item_id,
            "available": self.available,
            "categories": list(self.categories),
            "attributes": dict(self.attributes),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "updated_at": iso(self.updated_at),
        }


class ItemPatch(msgspec.Struct, kw_only=True, frozen=True):
    """An upsert: the fields given (``msgspec.UNSET`` for the others, which keep their stored values)."""

    item_id: str
    available: bool | msgspec.UnsetType = msgspec.UNSET
    categories: tuple[str, ...] | msgspec.UnsetType = msgspec.UNSET
    attributes: dict[str, AttributeValue] | msgspec.UnsetType = msgspec.UNSET
    created_at: float | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: float | msgspec.UnsetType | None = msgspec.UNSET

    def given(self) -> dict[str, Any]:
        """The fields this upsert sets, by name."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not msgspec.UNSET}

    def apply(self, stored: Item | None, now_s: float) -> Item:
        """The item after this upsert, from the stored one (None for a new item)."""
        base = stored or Item(item_id=self.item_id)
        return msgspec.structs.replace(base, **self.given(), updated_at=now_s)


@dataclass(frozen=True)
class ItemBounds:
    """Bounds on an item object (``serving.catalog.*``); ids follow the events' id rules (``events.*``)."""

    max_categories: int = 50
    max_attributes: int = 100
    max_value_chars: int = 1024
    ids: EventBounds = DEFAULT_BOUNDS


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _iso_seconds(text: str) -> float | None:
    """An ISO-8601 date-time (naive is UTC) as epoch seconds; None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def epoch_seconds(name: str, value: Any) -> float | None:
    """An ISO-8601 date-time (naive is UTC) or epoch seconds or milliseconds, as epoch seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadItem(f"field '{name}' must be an ISO-8601 date-time or epoch seconds, not {type(value).__name__}")
    if isinstance(value, str):
        seconds = _iso_seconds(value)
        if seconds is None:
            raise BadItem(f"field '{name}' {value!r} is not an ISO-8601 date-time (e.g. 2026-12-31T23:59:59Z)")
    elif not math.isfinite(value) or value <= 0:
        raise BadItem(f"field '{name}' {value!r} is not a positive finite epoch time")
    else:
        seconds = value / 1000.0 if value >= 1e11 else float(value)  # milliseconds beyond the year 5138 in seconds
    if not FIRST_S <= seconds <= LAST_S:  # GET /v1/items gives times back as ISO-8601, which has no other years
        raise BadItem(f"field '{name}' {value!r} lies outside the years 1 to 9999 (UTC)"[:300])
    return seconds


def _check_text(what: str, value: Any, bounds: ItemBounds) -> str:
    if not isinstance(value, str) or not value:
        raise BadItem(f"{what} must be a non-empty string, not {value!r}"[:300])
    if len(value) > bounds.max_value_chars:
        raise BadItem(
            f"{what} is {len(value)} characters > limit {bounds.max_value_chars} (serving.catalog.max_value_chars)"
        )
    return value


def _categories(value: Any, bounds: ItemBounds) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadItem(f"field 'categories' must be a list of strings, not {type(value).__name__}")
    if len(value) > bounds.max_categories:
        raise BadItem(
            f"field 'categories' has {len(value)} > limit {bounds.max_categories} (serving.catalog.max_categories)"
        )
    return tuple(dict.fromkeys(_check_text("a category", c, bounds) for c in value))


def _attributes(value: Any, bounds: ItemBounds) -> dict[str, AttributeValue]:
    if not isinstance(value, dict):
        raise BadItem(f"field 'attributes' must be an object of string or number values, not {type(value).__name__}")
    if len(value) > bounds.max_attributes:
        raise BadItem(
            f"field 'attributes' has {len(value)} keys > limit {bounds.max_attributes} (serving.catalog.max_attributes)"
        )
    out: dict[str, AttributeValue] = {}
    for key, v in value.items():
        _check_text("an attribute name", key, bounds)
        if isinstance(v, str):
            out[key] = _check_text(f"attribute {key!r}", v, bounds)
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = v
        else:
            raise BadItem(f"attribute {key!r} must be a string or a finite number (the map is flat), not {v!r}"[:300])
    return out


def parse_item(obj: Any, bounds: ItemBounds) -> ItemPatch:
    """One item object (decoded JSON) as an upsert; ``BadItem`` naming the field otherwise. Unknown fields are
    refused, so a misspelt field is never silently dropped."""
    if not isinstance(obj, dict):
        raise BadItem(f"an item must be a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - {"item_id", *FIELDS, "updated_at"})
    if unknown:
        raise BadItem(f"unknown field {unknown[0]!r}; an item has item_id, {', '.join(FIELDS)}")
    item_id = obj.get("item_id")
    if not isinstance(item_id, str) or not item_id:
        raise BadItem("missing field 'item_id'" if item_id is None else "field 'item_id' must be a non-empty string")
    if len(item_id) > bounds.ids.max_id_chars:
        raise BadItem(
            f"field 'item_id' is {len(item_id)} characters > limit {bounds.ids.max_id_chars} (events.max_id_chars)"
        )
    if bounds.ids.id_regex.fullmatch(item_id) is None:
        raise BadItem(f"field 'item_id' {item_id[:40]!r} is blank or has a control character or surrounding whitespace")
    fields: dict[str, Any] = {}
    if "available" in obj:
        if not isinstance(obj["available"], bool):
            raise BadItem(f"field 'available' must be true or false, not {obj['available']!r}"[:300])
        fields["available"] = obj["available"]
    if "categories" in obj:
        fields["categories"] = _categories(obj["categories"], bounds)
    if "attributes" in obj:
        fields["attributes"] = _attributes(obj["attributes"], bounds)
    for name in ("created_at", "expires_at"):
        if name in obj:
            fields[name] = epoch_seconds(name, obj[name])
    return ItemPatch(item_id=item_id, **fields)
