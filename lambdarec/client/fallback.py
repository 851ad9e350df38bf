"""The last-known-good popular list: kept from the service's ``GET /v1/popular`` while it answers, served locally
(flagged ``local_fallback``, ``degraded``) when it cannot be reached, so a product page always has a list."""

from __future__ import annotations

import time
from collections.abc import Iterable

from lambdarec.client.types import PopularItems, Recommendations, RecommendedItem

LOCAL_FALLBACK = "service-unreachable"


class LastKnownPopular:
    """The newest popular list fetched, and whether it is due for a refresh."""

    def __init__(self, refresh_s: float):
        self.refresh_s = refresh_s
        self.popular: PopularItems | None = None
        self.fetched_at = -float("inf")

    def due(self) -> bool:
        return time.monotonic() - self.fetched_at >= self.refresh_s

    def keep(self, popular: PopularItems) -> None:
        if popular.items:  # an empty answer (a snapshot with no popularity) never replaces a good list
            self.popular = popular
        self.fetched_at = time.monotonic()

    def recommendations(
        self, user_id: str | None, k: int, offset: int, exclude: Iterable[str] = ()
    ) -> Recommendations | None:
        """A list of the popular items not excluded, or None when no list was ever fetched."""
        if self.popular is None:
            return None
        skip = set(exclude)
        kept = [item for item in self.popular.items if item.item_id not in skip][offset : offset + k]
        return Recommendations(
            user_id=user_id,
            snapshot=self.popular.snapshot,
            fresh_state_age_s=None,
            degraded=True,
            degraded_reason=LOCAL_FALLBACK,
            k=k,
            offset=offset,
            items=[RecommendedItem(item.item_id, item.score, "popular") for item in kept],
            local_fallback=True,
        )
