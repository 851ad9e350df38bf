"""Request and response bodies of the HTTP API, declared so the OpenAPI document is exact.

The recommendations body (:class:`Recommendations`) is also what ``lambdarec recommend --json`` prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from lambdarec.events import ID_PATTERN
from lambdarec.settings import ServingSettings

Source = Literal["batch", "speed", "session", "trending", "popular"]


class RecommendedItem(BaseModel):
    """One recommended item with its provenance."""

    item_id: str = Field(description="The item's id.", examples=["i42"])
    score: float = Field(description="Merged re-rank score; higher is better. Comparable within one list only.")
    source: Source = Field(
        description="What brought the item into the pool: the nightly `batch` candidates, the `speed` layer's "
        "fresh fold-in vector, neighbours of a `session` item, `trending` counts, or `popular` as the last resort."
    )
    reason: str | None = Field(None, description="Why it was picked, in words; only with `explain=true`.")
    components: dict[str, float] | None = Field(
        None, description="Score parts (cf, session, trending) before weighting; only with `explain=true`."
    )


_RECS_EXAMPLE = {
    "user_id": "u1",
    "snapshot": "20240201T000000000Z-a1b2c3",
    "fresh_state_age_s": 12.5,
    "degraded": False,
    "k": 2,
    "offset": 0,
    "items": [
        {"item_id": "i42", "score": 1.31, "source": "batch", "reason": None, "components": None},
        {"item_id": "i7", "score": 1.02, "source": "session", "reason": None, "components": None},
    ],
}


class Recommendations(BaseModel):
    """A ranked list for one user, or for an anonymous session (``user_id`` null)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RECS_EXAMPLE]})

    user_id: str | None = Field(description="Whom the list is for; null for an anonymous session or basket.")
    snapshot: str = Field(description="Version of the snapshot the list was ranked with.")
    fresh_state_age_s: float | None = Field(
        description="Seconds between now and the user's newest event applied by the speed layer; null when the "
        "speed layer holds nothing for this user (or the store was unavailable)."
    )
    degraded: bool = Field(
        description="True when the store could not be read: the list comes from memory (the user's last read, "
        "or session, trending and popular items). The header `X-Lambdarec-Degraded` says why."
    )
    degraded_reason: Literal["store-unavailable", "corrupt-row"] | None = Field(
        None,
        description="Why `degraded` is true: `store-unavailable` (the store could not be read in time), or "
        "`corrupt-row` (this user's stored row failed its checksum or names unknown items: the list comes from "
        "the user's fresh state, session, trending and popular items). Null when not degraded.",
    )
    k: int = Field(description="How many items were asked for.")
    offset: int = Field(description="How many ranked items were skipped (paging).")
    items: list[RecommendedItem] = Field(description="Best first; fewer than `k` when the catalogue runs out.")


def batch_request_model(s: ServingSettings) -> type[BaseModel]:
    """The ``POST /v1/recommendations`` body, its bounds taken from ``s`` so the OpenAPI document states them."""
    item_id = Annotated[str, StringConstraints(min_length=1, max_length=s.max_id_chars, pattern=ID_PATTERN)]
    items = f"at most {s.max_request_items} (serving.max_request_items)"
    return create_model(
        "RecommendationsBatchRequest",
        __doc__="Several users at once, or one anonymous session or basket (`users` empty, `items` given).",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={
                "examples": [{"users": ["u1", "u2"], "k": 5}, {"items": ["i3", "i9"], "k": 10, "explain": True}]
            },
        ),
        users=(
            list[item_id],
            Field(
                default_factory=list,
                max_length=s.max_batch,
                description="Users to rank "
                f"for, one list each, at most {s.max_batch} (serving.max_batch); empty for an anonymous request.",
            ),
        ),
        items=(
            list[item_id],
            Field(
                default_factory=list,
                max_length=s.max_request_items,
                description="Session or "
                "basket items, oldest first: every list is re-ranked towards them and they are not recommended back; "
                f"they seed the anonymous list. {items}.",
            ),
        ),
        exclude=(
            list[item_id],
            Field(
                default_factory=list, max_length=s.max_request_items, description=f"Items never to recommend; {items}."
            ),
        ),
        k=(
            int | None,
            Field(
                None,
                ge=1,
                le=s.max_k,
                description=f"Items per list, 1..{s.max_k} (serving.max_k); default {s.default_k} (serving.default_k).",
            ),
        ),
        offset=(int, Field(0, ge=0, le=s.max_offset, description=f"Ranked items to skip, 0..{s.max_offset}.")),
        explain=(bool, Field(False, description="Add a reason and score parts to every item.")),
    )


class RecommendationsBatch(BaseModel):
    """One list per user asked for, in the order asked; one anonymous list when no user was given."""

    snapshot: str = Field(description="Version of the snapshot every list was ranked with.")
    degraded: bool = Field(description="True when the store could not be read for this request.")
    results: list[Recommendations]


class ScoredItem(BaseModel):
    """An item and a score whose meaning the endpoint states."""

    item_id: str = Field(examples=["i7"])
    score: float


class SimilarItems(BaseModel):
    """Items most similar to one item (cosine similarity of the snapshot's item factors)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"item_id": "i3", "snapshot": "20240201T000000000Z-a1b2c3", "items": [{"item_id": "i7", "score": 0.93}]}
            ]
        }
    )

    item_id: str
    snapshot: str
    items: list[ScoredItem] = Field(description="Most similar first; score is the cosine similarity.")


class PopularItems(BaseModel):
    """The most interacted-with items of the snapshot's window."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "snapshot": "20240201T000000000Z-a1b2c3",
                    "window": "recent",
                    "items": [{"item_id": "i1", "score": 812.0}],
                }
            ]
        }
    )

    snapshot: str
    window: Literal["recent", "all"] = Field(
        description="`recent`: the last `batch.popularity_recent_days` before the cut-off; `all`: the whole window."
    )
    items: list[ScoredItem] = Field(description="Most popular first; score is the weighted interaction count.")


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
                            "reason": "unknown event_type 'teleport'; known: cart, click, purchase, rating, view",
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
    item_id: str = Field(description=_ID, examples=["i7"])
    event_type: str = Field(description="One of the keys of `batch.event_weights`.", examples=["click"])
    timestamp: str | float = Field(
        description="Event time: ISO-8601 (e.g. 2026-11-29T10:15:00Z) or epoch seconds or milliseconds, between "
        "`events.min_timestamp_s` and now + `speed.future_tolerance_s`.",
        examples=["2026-11-29T10:15:00Z"],
    )
    weight: float | None = Field(None, description="A finite number in [0, `events.max_weight`].")
    session_id: str | None = None
    context: dict[str, str | int | float] | None = None
    schema_: int | None = Field(None, alias="schema")


class SnapshotSummary(BaseModel):
    """One snapshot version in the store."""

    version: str
    state: Literal["writing", "published", "retired"]
    current: bool = Field(description="The store's current pointer names it.")
    serving: bool = Field(description="This server process has it loaded and ranks with it.")
    created_at: datetime
    published_at: datetime | None
    as_of: str | None = Field(description="The data cut-off the batch job ran with.")
    counts: dict[str, Any] | None = Field(description="Rows and interactions, from the manifest.")
    metrics: dict[str, Any] | None = Field(description="The quality gate's figures, from the manifest.")


class SnapshotList(BaseModel):
    """Every snapshot of the store's namespace, newest first."""

    current: str | None = Field(description="The store's current version.")
    serving: str | None = Field(description="The version this server process ranks with.")
    snapshots: list[SnapshotSummary]


class Activation(BaseModel):
    """The result of activating (rolling back or forward to) a published snapshot."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"activated": "20240201T000000000Z-a1b2c3", "previous": "20240202T000000000Z-d4e5f6"}]
        }
    )

    activated: str = Field(description="Now current in the store and loaded by this server process.")
    previous: str | None = Field(description="What this server process served before.")


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    """Whether this process can serve personalised lists: a snapshot is loaded and the store answers."""

    ready: bool
    snapshot: str | None = Field(description="The loaded snapshot's version.")
    reasons: list[str] = Field(default_factory=list, description="Why not ready; empty when ready.")


class Erasure(BaseModel):
    """What `DELETE /v1/users/{user_id}` did (the same as `lambdarec forget USER --json`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "users": ["u42"],
                    "erased_at": 1764400000.0,
                    "lake_version": 12,
                    "lake_rows_deleted": 17,
                    "fresh_states_erased": 1,
                    "log_end": {"0": 1200},
                    "vacuum": "older lake versions keep the files until `lambdarec lake vacuum` ...",
                }
            ]
        }
    )

    users: list[str] = Field(description="The erased user ids.")
    erased_at: float = Field(description="Epoch seconds of the erasure; snapshots built before it hide the user.")
    lake_version: int | None = Field(description="The lake version after the delete (null without a lake).")
    lake_rows_deleted: int = Field(description="Rows deleted from the lake's current version.")
    fresh_states_erased: int = Field(description="Fresh states replaced by a tombstone.")
    log_end: dict[str, int] = Field(description="The event log's end offsets: older events of the user are dropped.")
    vacuum: str = Field(description="What removes the rows from older lake versions and snapshots, and when.")
