"""Bodies of the recommendations endpoints (``GET /v1/users/{id}/recommendations``, ``POST /v1/recommendations``).

The recommendations body (:class:`Recommendations`) is also what ``lambdarec recommend --json`` prints.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from lambdarec.events import ID_PATTERN
from lambdarec.settings import ServingSettings
from serving_layer.catalog_params import FILTER_DOC, parse_filter_param

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
        None,
        description="Score parts (cf, session, trending) before weighting, and for a user with feedback the "
        "demotion factors applied after it (`dislike`: near an item they disliked; `fatigue`: shown "
        "`serving.fatigue.after` times without a click; 1 when none, the reason then names the cause); only with "
        "`explain=true`. Where the catalog's rules or the request's filters moved the item up, `rule:<name>` says "
        "how many items that would have ranked above it were removed by that rule (`unlisted`, `unavailable`, "
        "`expired`, `never_category`, `default_filter`, `categories`, `exclude_categories`, `filter`).",
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
    experiment: str | None = Field(
        None,
        description="The experiment the list was served under (also the `X-Lambdarec-Experiment` header); "
        "null outside experiments. Send it back in events' `context` to attribute them.",
    )
    arm: str | None = Field(None, description="The experiment's arm (also the `X-Lambdarec-Arm` header).")
    impression_id: str | None = Field(
        None,
        description="With `impressions=true`: the `event_id` of the `impression` event serving wrote for these "
        "items (context: experiment, arm, snapshot); null when not asked or the event log was unavailable.",
    )


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
        impressions=(
            bool,
            Field(
                False,
                description="Write one `impression` event per list for the items returned, attributed to "
                "the list's experiment arm; each list's `impression_id` names it.",
            ),
        ),
        session_id=(
            item_id | None,
            Field(
                None,
                description="The anonymous caller's session id: assigns an anonymous request (no `users`) "
                "to an experiment arm, sticky for the session.",
            ),
        ),
        **filter_fields(s),
    )


def filter_fields(s: ServingSettings) -> dict[str, Any]:
    """The body's request filters (``categories``, ``exclude_categories``, ``filter``), as the GET parameters."""
    c = s.catalog
    category = Annotated[str, StringConstraints(min_length=1, max_length=c.max_value_chars)]

    def parses(text: str | None) -> str | None:
        parse_filter_param(text, s)  # ValueError pointing at the character at fault: a 422
        return text

    many = f"at most {c.max_request_categories} (serving.catalog.max_request_categories)"
    return {
        "categories": (list[category], Field(default_factory=list, max_length=c.max_request_categories,
                                             description=f"Only items in at least one of these categories; {many}.")),
        "exclude_categories": (list[category], Field(default_factory=list, max_length=c.max_request_categories,
                                                     description=f"No item in any of these categories; {many}.")),
        "filter": (Annotated[str | None, AfterValidator(parses)],
                   Field(None, max_length=c.max_filter_chars, description=FILTER_DOC)),
    }  # fmt: skip


class RecommendationsBatch(BaseModel):
    """One list per user asked for, in the order asked; one anonymous list when no user was given."""

    snapshot: str = Field(description="Version of the snapshot every list was ranked with.")
    degraded: bool = Field(description="True when the store could not be read for this request.")
    results: list[Recommendations]
