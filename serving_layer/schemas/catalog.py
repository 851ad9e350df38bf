"""Bodies of the catalog endpoints: items as posted, as stored, and what happened to an upsert."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serving_layer.schemas.events import Rejection

_TIME = "ISO-8601 date-time (naive is UTC) or epoch seconds or milliseconds"


class ItemIn(BaseModel):
    """One item upsert: `item_id` and the fields to set; a field left out keeps its stored value (a new item:
    available, no categories, no attributes, no dates). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(description="At most `events.max_id_chars` characters matching `events.id_pattern`.")
    available: bool | None = Field(None, description="False: never returned by any endpoint.")
    categories: list[str] | None = Field(
        None, description="At most `serving.catalog.max_categories`; replaces the stored list."
    )
    attributes: dict[str, str | float] | None = Field(
        None,
        description="A flat map of string or number values, at most `serving.catalog.max_attributes`; replaces "
        "the stored map. Request filters (`filter`) match against it.",
    )
    created_at: str | float | None = Field(None, description=f"When the item was created: {_TIME}.")
    expires_at: str | float | None = Field(
        None, description=f"From this time the item is never returned: {_TIME}; null clears it."
    )


class Item(BaseModel):
    """An item as the catalog holds it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": "i7",
                    "available": True,
                    "categories": ["shoes", "sale"],
                    "attributes": {"brand": "acme", "price": 49.5},
                    "created_at": "2026-11-01T00:00:00Z",
                    "expires_at": None,
                    "updated_at": "2026-11-29T10:15:00Z",
                }
            ]
        }
    )

    item_id: str
    available: bool
    categories: list[str]
    attributes: dict[str, str | float]
    created_at: str | None = Field(description="ISO-8601 UTC, or null when never given.")
    expires_at: str | None = Field(description="ISO-8601 UTC, or null for no expiry.")
    updated_at: str = Field(description="When the last upsert was applied (ISO-8601 UTC).")


class ItemsResult(BaseModel):
    """What happened to the posted items. Valid items are upserted even when others are refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 2,
                    "rejected": 1,
                    "rejections": [{"index": 1, "reason": "field 'available' must be true or false, not 'yes'"}],
                }
            ]
        }
    )

    accepted: int = Field(description="Items upserted (in the store, and as changes in the event log).")
    rejected: int = Field(description="Items refused; none of them was written.")
    rejections: list[Rejection] = Field(description="Why each refused item was refused (the first 1000).")
