"""``[batch]``: the nightly job, with its sub-tables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lambdarec.settings.section import Section


class ColumnNames(Section):
    """Column names in the interaction log."""

    user_id: str = Field("user_id", description="Column holding the user id.")
    item_id: str = Field("item_id", description="Column holding the item id.")
    timestamp: str = Field("timestamp", description="Column holding the event time (datetime or epoch s/ms).")
    event_type: str = Field("event_type", description="Optional column holding the event type.")
    weight: str = Field("weight", description="Optional column holding an explicit weight.")
    event_id: str = Field("event_id", description="Optional column used to drop duplicate events.")


# L2 regularisation per model when `batch.regularization` is unset: the scales differ by orders of magnitude.
DEFAULT_REGULARIZATION = {"als": 50.0, "bpr": 0.01, "torch": 0.05}


class GateSettings(Section):
    """The quality gate: a new model is published only if it earns it on the job's own holdout."""

    min_lift_vs_popular: float = Field(
        1.1,
        ge=0,
        description="Refuse to publish unless the model's NDCG@K on the holdout is at least this multiple of the "
        "popularity baseline's on the same users; 0 turns the check off.",
    )
    max_users: int = Field(
        20000, ge=1, description="Holdout users scored by the gate (a seeded sample when there are more)."
    )


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
    model: Literal["als", "bpr", "torch"] = Field(
        "als", description="Trainer: implicit ALS, implicit BPR, or torch MF."
    )
    factors: int = Field(64, ge=2, le=1024, description="Embedding dimension.")
    iterations: int = Field(15, ge=1, description="Training iterations (ALS sweeps, BPR/torch epochs).")
    regularization: float | None = Field(
        None,
        ge=0,
        description="L2 regularisation, on the scale of the model. Unset: the model's default, ALS 50 (added to "
        "each least-squares solve; from the study in docs/quality-study.md), BPR 0.01, torch 0.05. "
        "`lambdarec batch tune` searches it.",
    )
    alpha: float = Field(2.0, gt=0, description="ALS confidence scaling: confidence = 1 + alpha * weight.")
    learning_rate: float = Field(0.05, gt=0, description="BPR and torch learning rate.")
    torch_loss: Literal["bpr", "softmax"] = Field("bpr", description="Torch trainer loss: BPR or sampled softmax.")
    torch_negatives: int = Field(64, ge=1, description="Sampled negatives per positive for the torch softmax loss.")
    torch_batch_size: int = Field(8192, ge=1, description="Torch trainer mini-batch size.")
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
    index: Literal["exact", "ivf", "hnsw"] = Field("exact", description="Candidate search: exact, or a FAISS index.")
    ivf_nlist: int = Field(0, ge=0, description="IVF cells; 0 picks about 4*sqrt(items).")
    ivf_nprobe: int = Field(16, ge=1, description="IVF cells visited per query.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_search: int = Field(256, ge=1, description="HNSW search breadth.")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build breadth: a better graph, a slower build.")
    recall_sample: int = Field(1000, ge=1, description="Users sampled to measure an approximate index's recall@K.")
    popularity_recent_days: float = Field(7.0, gt=0, description="Window of the recent popularity list.")
    holdout_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Newest share of the window held out, by time, for the quality gate."
    )
    gate_k: int = Field(10, ge=1, description="K of the gate's Recall@K and NDCG@K.")
    max_regression: float = Field(
        0.10,
        ge=0,
        description="Refuse to publish when the model's NDCG@K is this fraction below the current snapshot's, "
        "re-scored on the same holdout events (those newer than its data).",
    )
    lock_ttl_s: float = Field(
        60.0, gt=0, description="The job lock lapses this long after a killed job's last renewal (renewed every third)."
    )
    engine: Literal["local", "ray"] = Field("local", description="Where scoring and writing run.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (`ray://host:10001`); none starts a local one."
    )
    ray_actors: int = Field(
        0,
        ge=0,
        description="Ray actors that score and write user blocks, each holding the model once. 0: as many as "
        "the cluster's CPUs hold at `ray_cpus_per_actor` each when the job starts (1 with a SQLite store, "
        "which takes one writer).",
    )
    ray_cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs reserved per Ray actor; its scoring threads are this, rounded down (>= 1)."
    )
    ray_gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs reserved per Ray actor; above 0 its actors score with `device` (0: on CPU)."
    )
    ray_block_users: int = Field(
        65536,
        ge=1,
        description="Users per Ray batch, one actor call: scored in `user_block` pieces, written as one store "
        "part per piece. A multiple of `user_block` keeps the local engine's part boundaries.",
    )
    ray_max_restarts: int = Field(
        3,
        ge=-1,
        description="Times a lost Ray actor is restarted and its block retried (-1: no limit; 0: the job fails "
        "at the first lost actor). Retried blocks rewrite the same store parts, so nothing is counted twice.",
    )
    ray_local_cpus: int = Field(
        0, ge=0, description="CPUs of the local Ray started when no cluster is named (0: every core)."
    )
    ray_object_store_mb: int | None = Field(
        None,
        ge=80,
        description="Object store of the local Ray (MiB; it holds the factors and seen matrix once). "
        "Unset: Ray's default share of memory.",
    )
    source: Literal["auto", "lake", "files"] = Field(
        "auto",
        description="What the job reads. `lake`: one pinned version of the master dataset (`lake.url`). "
        "`files`: `--interactions` / `batch.interactions`. `auto`: files when a path is given, else the lake.",
    )

    # ---- quality: the gate, the tuner, the data-loss warning ----
    gate: GateSettings = Field(default_factory=GateSettings, description="The quality gate.")
    tune_every_days: float | None = Field(
        None,
        gt=0,
        description="The nightly re-tunes the model (as `lambdarec batch tune` does) when the last tuning is this many "
        "days older than its cut-off, and otherwise trains with the last tuned parameters; unset: never tunes, "
        "trains with these settings.",
    )
    tune_budget_s: float = Field(600.0, gt=0, description="Wall-clock budget of one tuning run.")
    tune_trials: int = Field(60, ge=1, description="Most trials of one tuning run (the budget may stop it sooner).")
    tune_models: list[Literal["als", "bpr", "torch"]] = Field(
        default_factory=lambda: ["als", "bpr", "torch"],
        min_length=1,
        description="Model families the tuner searches. Torch only where it is installed, and by default only "
        "on a GPU (set this list to search it on the CPU too).",
    )
    tune_validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Newest share of the window (by time) the tuner validates on; it trains on the rest.",
    )
    max_filtered_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Warn (log, `--json`, manifest) when the lookback or a row filter drops more than this share "
        "of the events at or before the cut-off.",
    )

    @property
    def effective_regularization(self) -> float:
        """``regularization``, or the model's default when it is unset (see :data:`DEFAULT_REGULARIZATION`)."""
        return DEFAULT_REGULARIZATION[self.model] if self.regularization is None else self.regularization

    @model_validator(mode="after")
    def _weights_non_negative(self) -> BatchSettings:
        bad = {k: v for k, v in self.event_weights.items() if v < 0}
        if bad:
            raise ValueError(f"event_weights must be >= 0; got {bad}")
        return self
