"""``[batch.train]``, ``[batch.torch]``, ``[batch.gate]`` and ``[batch.tune]``: what the nightly job trains, how
the quality gate judges it, and how the tuner searches its parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lambdarec.settings.section import Section

# L2 regularisation per model when `batch.train.regularization` is unset: the scales differ by orders of magnitude.
DEFAULT_REGULARIZATION = {"als": 50.0, "bpr": 0.01, "torch": 0.05}


class TrainSettings(Section):
    """The model the nightly job trains (``lambdarec batch tune`` searches these)."""

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

    @property
    def effective_regularization(self) -> float:
        """``regularization``, or the model's default when it is unset (see :data:`DEFAULT_REGULARIZATION`)."""
        return DEFAULT_REGULARIZATION[self.model] if self.regularization is None else self.regularization


class TorchSettings(Section):
    """The torch trainer (``batch.train.model = "torch"``)."""

    loss: Literal["bpr", "softmax"] = Field("bpr", description="Torch trainer loss: BPR or sampled softmax.")
    negatives: int = Field(64, ge=1, description="Sampled negatives per positive for the torch softmax loss.")
    batch_size: int = Field(8192, ge=1, description="Torch trainer mini-batch size.")


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
    holdout_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Newest share of the window held out, by time, for the quality gate."
    )
    k: int = Field(10, ge=1, description="K of the gate's Recall@K and NDCG@K.")
    max_regression: float = Field(
        0.10,
        ge=0,
        description="Refuse to publish when the model's NDCG@K is this fraction below the current snapshot's, "
        "re-scored on the same holdout events (those newer than its data).",
    )


class TuneSettings(Section):
    """The tuner (``lambdarec batch tune``, and the nightly when ``every_days`` is set)."""

    every_days: float | None = Field(
        None,
        gt=0,
        description="The nightly re-tunes the model (as `lambdarec batch tune` does) when the last tuning is this many "
        "days older than its cut-off, and otherwise trains with the last tuned parameters; unset: never tunes, "
        "trains with these settings.",
    )
    budget_s: float = Field(600.0, gt=0, description="Wall-clock budget of one tuning run.")
    trials: int = Field(60, ge=1, description="Most trials of one tuning run (the budget may stop it sooner).")
    models: list[Literal["als", "bpr", "torch"]] = Field(
        default_factory=lambda: ["als", "bpr", "torch"],
        min_length=1,
        description="Model families the tuner searches. Torch only where it is installed, and by default only "
        "on a GPU (set this list to search it on the CPU too).",
    )
    validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Newest share of the window (by time) the tuner validates on; it trains on the rest.",
    )
