"""The bodies the client returns, typed (msgspec structs decoded straight from the JSON).

They mirror the serving layer's response schemas (a test checks them against the served OpenAPI document);
fields a newer server adds are ignored. ``local_fallback`` is the client's own: true when the list was served
from the last-known-good popular list because the service could not be reached.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class RecommendedItem(msgspec.Struct, frozen=True):
    item_id: str
    score: float
    source: str  # batch, speed, session, trending or popular
    reason: str | None = None
    components: dict[str, float] | None = None


class Recommendations(msgspec.Struct, frozen=True):
    user_id: str | None
    snapshot: str
    fresh_state_age_s: float | None
    degraded: bool
    k: int
    offset: int
    items: list[RecommendedItem]
    degraded_reason: str | None = None
    experiment: str | None = None
    arm: str | None = None
    impression_id: str | None = None
    local_fallback: bool = False  # client-side: served from the last-known-good popular list

    def attribution(self) -> dict[str, str]:
        """The ``context`` entries that attribute an event to the arm this list was served under (send them
        with the clicks and purchases it leads to); empty outside experiments."""
        if self.experiment is None or self.arm is None:
            return {}
        return {"experiment": self.experiment, "arm": self.arm}


class RecommendationsBatch(msgspec.Struct, frozen=True):
    snapshot: str
    degraded: bool
    results: list[Recommendations]
    local_fallback: bool = False  # client-side: every list served from the last-known-good popular list


class ScoredItem(msgspec.Struct, frozen=True):
    item_id: str
    score: float


class SimilarItems(msgspec.Struct, frozen=True):
    item_id: str
    snapshot: str
    items: list[ScoredItem]


class PopularItems(msgspec.Struct, frozen=True):
    snapshot: str
    window: Literal["recent", "all"]
    items: list[ScoredItem]


class Rejection(msgspec.Struct, frozen=True):
    index: int
    reason: str


class IngestResult(msgspec.Struct, frozen=True):
    """What happened to posted events (or items): valid ones are written even when others are refused."""

    accepted: int
    rejected: int
    rejections: list[Rejection]


class ExperimentAssignment(msgspec.Struct, frozen=True):
    experiment: str
    arm: str | None
    unit: Literal["user", "session"]
    enabled: bool
    served: bool


class Assignments(msgspec.Struct, frozen=True):
    user_id: str
    assignments: list[ExperimentAssignment]


CLIENT_ONLY_FIELDS = frozenset({"local_fallback"})
