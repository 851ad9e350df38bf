"""Body of ``DELETE /v1/users/{user_id}``: what an erasure did."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
