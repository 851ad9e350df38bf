"""Bodies of ``POST /v1/events``: the events posted and what happened to them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Rejection(BaseModel):
    """One refused event: its 0-based position in the request and why."""

    index: int
    reason: str = Field(examples=["missing field 'user_id'"])


class IngestResult(BaseModel):
    """What happened to the posted events. Valid events are appended even when others are refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 2,
                    "rejected": 1,
                    "rejections": [
                        {
                            "index": 1,
                            "reason": "unknown event_type 'teleport'; known: cart, click, dislike, hide, "
                            "impression, purchase, rating, view",
                        }
                    ],
                }
            ]
        }
    )

    accepted: int = Field(description="Events appended to the event log.")
    rejected: int = Field(description="Events refused; none of them was appended.")
    rejections: list[Rejection] = Field(description="Why each refused event was refused (the first 1000).")


_ID = "At most `events.max_id_chars` characters matching `events.id_pattern` (not blank, no control characters)."


class EventIn(BaseModel):
    """One interaction event, as the event log's wire format defines it (unknown fields are ignored)."""

    model_config = ConfigDict(extra="allow")

    event_id: str = Field(
        description=f"Unique per event; a repeat within `events.dedup_window_s` is skipped. {_ID}", examples=["e-1"]
    )
    user_id: str = Field(description=_ID, examples=["u42"])
    item_id: str | None = Field(
        None,
        description=f"Required, except for an `impression` that lists `item_ids` (it then holds the first). {_ID}",
        examples=["i7"],
    )
    event_type: str = Field(
        description="One of the keys of `batch.event_weights`, or a feedback type: `dislike` (not this, and less "
        "like it), `hide` (never this again) or `impression` (these items were shown).",
        examples=["click"],
    )
    timestamp: str | float = Field(
        description="Event time: ISO-8601 (e.g. 2026-11-29T10:15:00Z) or epoch seconds or milliseconds, between "
        "`events.min_timestamp_s` and now + `speed.future_tolerance_s`.",
        examples=["2026-11-29T10:15:00Z"],
    )
    weight: float | None = Field(None, description="A finite number in [0, `events.max_weight`].")
    session_id: str | None = None
    context: dict[str, str | int | float] | None = None
    schema_: int | None = Field(None, alias="schema")
    item_ids: list[str] | None = Field(
        None,
        description="Only for an `impression`: the items shown, 1 to `events.max_impression_items` unique ids, in "
        f"the order shown. {_ID}",
        examples=[["i7", "i9", "i2"]],
    )
