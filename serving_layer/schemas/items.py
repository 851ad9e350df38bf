"""Bodies of the item endpoints: similar items and popular items."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
