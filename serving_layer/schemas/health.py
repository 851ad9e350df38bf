"""Bodies of the probes: ``/livez`` and ``/readyz``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    """Whether this process can serve personalised lists: a snapshot is loaded and the store answers."""

    ready: bool
    snapshot: str | None = Field(description="The loaded snapshot's version.")
    reasons: list[str] = Field(default_factory=list, description="Why not ready; empty when ready.")
