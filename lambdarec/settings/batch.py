"""``[batch]``: the nightly job, with its sub-tables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lambdarec.settings.batch_scoring import IndexSettings, RaySettings
from lambdarec.settings.batch_train import GateSettings, TorchSettings, TrainSettings, TuneSettings
from lambdarec.settings.section import Section


class ColumnNames(Section):
    """Column names in the interaction log."""

    user_id: str = Field("user_id", description="Column holding the user id.")
    item_id: str = Field("item_id", description="Column holding the item id.")
    timestamp: str = Field("timestamp", description="Column holding the event time (datetime or epoch s/ms).")
    event_type: str = Field("event_type", description="Optional column holding the event type.")
    weight: str = Field("weight", description="Optional column holding an explicit weight.")
    event_id: str = Field("event_id", description="Optional column used to drop duplicate events.")


class BatchSettings(Section):
    """The nightly job: read interactions, train, precompute candidates, publish a snapshot."""

    interactions: str | None = Field(None, description="Interaction log: a parquet/CSV file, a glob or a folder.")
    columns: ColumnNames = Field(default_factory=ColumnNames, description="Column names in the interaction log.")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0, "rating": 1.0},
        description="Confidence weight per event type; the speed layer applies the snapshot's copy of this map.",
    )
    lookback_days: float | None = Field(
        None,
        gt=0,
        description="Only events this recent before `--as-of` are used; unset uses the whole log. The job warns "
        "when the window drops more than `max_filtered_share` of the events.",
    )
    on_bad_rows: Literal["skip", "fail"] = Field(
        "skip", description="`skip` counts and reports bad rows; `fail` stops the job naming the first bad row."
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto",
        description="Unit of numeric timestamps. `auto` decides per value by magnitude: below 1e11 seconds, "
        "below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.",
    )
    period_hours: float = Field(24.0, gt=0, description="How often the job runs; sizes table TTLs.")
    seed: int = Field(42, description="Seed for training, sampling and the holdout split.")
    threads: int = Field(0, ge=0, description="CPU threads for training and scoring; 0 uses every core.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "auto", description="Where to train and score; auto picks CUDA if present."
    )
    top_k: int = Field(200, ge=1, le=10000, description="Candidates precomputed per user.")
    neighbours: int = Field(50, ge=1, le=1000, description="Item-item neighbours precomputed per item.")
    user_block: int = Field(4096, ge=1, description="Users scored per block; bounds peak memory.")
    score_tile_mb: float = Field(
        64.0, gt=0, description="Scores held at once per CPU scoring thread (MiB; the mask adds a quarter)."
    )
    popularity_recent_days: float = Field(7.0, gt=0, description="Window of the recent popularity list.")
    lock_ttl_s: float = Field(
        60.0, gt=0, description="The job lock lapses this long after a killed job's last renewal (renewed every third)."
    )
    engine: Literal["local", "ray"] = Field("local", description="Where scoring and writing run.")
    source: Literal["auto", "lake", "files"] = Field(
        "auto",
        description="What the job reads. `lake`: one pinned version of the master dataset (`lake.url`). "
        "`files`: `--interactions` / `batch.interactions`. `auto`: files when a path is given, else the lake.",
    )
    max_filtered_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Warn (log, `--json`, manifest) when the lookback or a row filter drops more than this share "
        "of the events at or before the cut-off.",
    )

    non_positive_types: list[str] = Field(
        default_factory=lambda: ["dislike", "hide", "impression"],
        description="Event types the model never trains on as positive interactions (read, counted as "
        "`non_positive` in the read report, left out of the matrix). Serving and the speed layer use them as "
        "feedback. Take a type out of this list (and give it a weight in `event_weights`) to train on it.",
    )

    # ---- sub-tables, one per concern ----
    train: TrainSettings = Field(default_factory=TrainSettings, description="The model trained.")
    torch: TorchSettings = Field(default_factory=TorchSettings, description="The torch trainer.")
    index: IndexSettings = Field(default_factory=IndexSettings, description="Candidate search.")
    ray: RaySettings = Field(default_factory=RaySettings, description="The Ray engine.")
    gate: GateSettings = Field(default_factory=GateSettings, description="The quality gate.")
    tune: TuneSettings = Field(default_factory=TuneSettings, description="The tuner.")

    @model_validator(mode="after")
    def _weights_non_negative(self) -> BatchSettings:
        bad = {k: v for k, v in self.event_weights.items() if v < 0}
        if bad:
            raise ValueError(f"event_weights must be >= 0; got {bad}")
        trained = {"dislike", "hide", "impression"} - set(self.non_positive_types) - set(self.event_weights)
        if trained:
            raise ValueError(
                f"event type(s) {sorted(trained)} are not in non_positive_types, so the model trains on them: "
                "give each a weight in event_weights"
            )
        both = set(self.non_positive_types) & set(self.event_weights)
        if both:
            raise ValueError(
                f"event type(s) {sorted(both)} are in both event_weights and non_positive_types; a type is either "
                "trained on or not"
            )
        return self
