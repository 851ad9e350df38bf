"""Body of ``GET /v1/users/{user_id}/assignments``: the user's arm in every experiment."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExperimentAssignment(BaseModel):
    """The user's place in one experiment."""

    experiment: str = Field(description="The experiment's name (`[experiments.NAME]`).")
    arm: str | None = Field(description="The arm the user is in; null when outside the experiment's traffic.")
    unit: Literal["user", "session"] = Field(description="What was hashed: the user id, or an anonymous session id.")
    enabled: bool = Field(description="Whether serving applies the experiment.")
    served: bool = Field(
        description="Whether this assignment shapes the user's lists: the first enabled experiment that has the "
        "user in an arm (at most one is served)."
    )


class Assignments(BaseModel):
    """Every configured experiment, in settings order, with the user's arm in it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u42",
                    "assignments": [
                        {"experiment": "home-v2", "arm": "diverse", "unit": "user", "enabled": True, "served": True}
                    ],
                }
            ]
        }
    )

    user_id: str
    assignments: list[ExperimentAssignment]
