"""Bodies of the snapshot endpoints: the list of versions and an activation (rollback)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
