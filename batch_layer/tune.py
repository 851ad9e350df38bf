"""Tune the nightly model on a time-based validation window just before the cut-off, with Optuna.

The newest ``batch.tune.validation_fraction`` of the window (by time) validates; the rest trains. Each trial
picks a model family from ``batch.tune.models`` (ALS, BPR, torch MF where torch is installed) and its
hyper-parameters (factors, iterations, regularization, alpha for ALS, learning rate for BPR and torch), trains
with the batch layer's own trainer and scores warm-user NDCG@K on the validation window, exactly as the gate
scores (:mod:`batch_layer.gate`). The search is Optuna's TPE sampler, seeded with ``batch.seed``, with median
pruning: a trial is first trained for half its iterations, and dropped if that is below the median of the
others at the same step. The first trial is the current settings, so the best is never worse than them on the
validation window. The search stops after ``trials`` trials or ``budget_s`` seconds, whichever comes first.

Example
-------
>>> result = tune(frame, settings.batch, budget_s=120)        # doctest: +SKIP
>>> result.best_params["model"], round(result.best_value, 3)  # doctest: +SKIP
('als', 0.207)
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import tomlkit

from batch_layer.errors import BadInputError
from batch_layer.gate import model_top, sample_users, unseen_holdout
from batch_layer.matrix import build_matrix, split_holdout
from batch_layer.quality_metrics import user_metrics
from batch_layer.train.device import resolve_device
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings, write_config

log = get_logger(__name__)

# The parameters a tuning sets in [batch]; everything else keeps the caller's settings.
TUNED_KEYS = ("model", "factors", "iterations", "regularization", "alpha", "learning_rate")
FACTORS = (16, 32, 64, 128, 256)


@dataclass
class TuneResult:
    """The search: every trial, the best parameters and their validation NDCG@K (the current settings' too)."""

    best_params: dict[str, Any]
    best_value: float
    baseline_value: float
    k: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self, at: datetime | None = None) -> dict[str, Any]:
        """Plain data: the record the manifest keeps under ``tuning`` and ``--json`` prints."""
        return {
            "at": (at or datetime.now(UTC)).isoformat(),
            "params": self.best_params,
            "metric": f"ndcg@{self.k}",
            "value": round(self.best_value, 6),
            "current_settings_value": round(self.baseline_value, 6),
            "trials": self.trials,
            "validation": self.validation,
            "seconds": round(self.seconds, 2),
        }


def available_models(batch: BatchSettings) -> list[str]:
    """``batch.tune.models`` less torch where torch is not installed, and, unless the list was set explicitly,
    where it would train on the CPU (many times slower than ALS there: a few trials would eat the budget)."""
    models = list(batch.tune.models)
    if "torch" in models and (
        importlib.util.find_spec("torch") is None
        or ("models" not in batch.tune.model_fields_set and resolve_device(batch.device) != "cuda")
    ):
        models.remove("torch")
        log.info("batch.tune_without_torch", reason="torch is not installed or there is no GPU")
    if not models:
        raise BadInputError("batch.tune.models names only torch, which is not installed (pip install torch)")
    return models


def tune(
    frame: pl.DataFrame,
    batch: BatchSettings,
    *,
    budget_s: float | None = None,
    trials: int | None = None,
    progress: bool = False,
) -> TuneResult:
    """Search the model and its hyper-parameters on ``frame``'s validation window; see the module docstring.

    Raises
    ------
    BadInputError
        The window is too small to hold out a validation share with warm users.
    """
    import optuna

    t0 = time.perf_counter()
    budget_s = batch.tune.budget_s if budget_s is None else budget_s
    trials = batch.tune.trials if trials is None else trials
    fit_frame, valid_frame = split_holdout(frame, batch.tune.validation_fraction)
    if fit_frame.height == 0 or valid_frame.height == 0:
        raise BadInputError(f"{frame.height} events are too few to hold out a validation window for tuning")
    data = build_matrix(fit_frame)
    held = unseen_holdout(valid_frame, data)
    users = sample_users(held, batch.gate.max_users, batch.seed)
    if users.size == 0:
        raise BadInputError("no user of the validation window was seen before it: nothing to tune on")
    k = batch.gate.k
    models = available_models(batch)

    def score(settings: BatchSettings) -> float:
        from batch_layer.train import train

        factors = train(data.matrix, settings, show_progress=False)
        if not np.isfinite(factors.item_factors).all() or not np.isfinite(factors.user_factors).all():
            return 0.0
        return float(np.nanmean(user_metrics(model_top(factors, data.matrix, users, k, settings), held[users], k)[1]))

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, models)
        settings = apply_params(batch, params)
        half = max(1, params["iterations"] // 2)
        if half < params["iterations"]:
            early = score(apply_params(settings, {"iterations": half}))
            trial.report(early, step=0)
            if trial.should_prune():
                raise optuna.TrialPruned()
        value = score(settings)
        trial.report(value, step=1)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=batch.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    )
    current = current_params(batch)
    if current["model"] in models:
        study.enqueue_trial(_as_distribution_params(current))
    study.optimize(objective, n_trials=trials, timeout=budget_s, show_progress_bar=progress, catch=(ValueError,))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise BadInputError(f"no tuning trial finished within {budget_s:g} s; raise --budget-s")
    best = study.best_trial
    baseline = done[0].value if done[0].number == 0 and current["model"] in models else float("nan")
    result = TuneResult(
        best_params=_params_of(best.params),
        best_value=float(best.value),
        baseline_value=float(baseline) if baseline is not None else float("nan"),
        k=k,
        trials=[_trial_row(t) for t in study.trials],
        validation={
            "fit_events": fit_frame.height,
            "validation_events": valid_frame.height,
            "validation_from_ms": int(valid_frame["ts"].min()),
            "users": int(users.size),
            "models": models,
        },
        seconds=time.perf_counter() - t0,
    )
    log.info("batch.tuned", params=result.best_params, value=result.best_value, trials=len(study.trials))
    return result


def nightly_settings(
    frame: pl.DataFrame,
    batch: BatchSettings,
    current: dict[str, Any] | None,
    as_of: datetime,
    *,
    progress: bool = False,
) -> tuple[BatchSettings, dict[str, Any] | None]:
    """The settings the nightly trains with, and the ``tuning`` record for its manifest.

    With ``batch.tune.every_days`` unset: ``batch`` itself, no record. Otherwise the current snapshot's last
    tuning, while it is younger than ``tune_every_days`` at ``as_of``; else a new tuning within
    ``batch.tune.budget_s``.
    """
    if batch.tune.every_days is None:
        return batch, None
    last = (current or {}).get("tuning")
    if last and "params" in last and "at" in last:
        age_days = (as_of - datetime.fromisoformat(last["at"])).total_seconds() / 86400
        if 0 <= age_days < batch.tune.every_days:
            log.info("batch.tuning_reused", at=last["at"], params=last["params"])
            return apply_params(batch, last["params"]), {**last, "reused_from": (current or {}).get("version")}
    result = tune(frame, batch, progress=progress)
    record = result.to_dict(at=as_of)
    record.pop("trials")  # the manifest keeps the outcome; `batch tune --json` prints every trial
    return apply_params(batch, result.best_params), record


def current_params(batch: BatchSettings) -> dict[str, Any]:
    """The tuned keys as ``batch`` sets them (the model's default regularization filled in)."""
    train = batch.train
    return {**{key: getattr(train, key) for key in TUNED_KEYS}, "regularization": train.effective_regularization}


def apply_params(batch: BatchSettings, params: dict[str, Any]) -> BatchSettings:
    """``batch`` with a tuning's parameters in place of its own (``batch.train``)."""
    train = batch.train.model_copy(update={k: v for k, v in params.items() if k in TUNED_KEYS})
    return batch.model_copy(update={"train": train})


def write_settings(params: dict[str, Any], path: Path, comment: str) -> Path:
    """Set the tuned keys in the ``[batch.train]`` table of the settings file ``path`` (created if missing), keeping
    its other keys, sections and comments (a tuned key still under ``[batch]``, its name before 2026-11, moves);
    checked by loading it back before it replaces ``path``."""
    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    batch = doc.get("batch")
    if batch is None:
        batch = tomlkit.table(is_super_table=True)
        doc["batch"] = batch
    section = batch.get("train")
    if section is None:
        section = tomlkit.table()
        batch["train"] = section
    section.comment(comment.replace("\n", " "))
    for key in TUNED_KEYS:
        if key in batch:
            del batch[key]
        if key in params:
            section[key] = params[key]
    return write_config(path, tomlkit.dumps(doc))


def _suggest(trial: Any, models: list[str]) -> dict[str, Any]:
    model = trial.suggest_categorical("model", models)
    params: dict[str, Any] = {
        "model": model,
        "factors": trial.suggest_categorical("factors", FACTORS),
        "iterations": trial.suggest_int("iterations", 5, 40, log=True),
    }
    if model == "als":
        params["regularization"] = trial.suggest_float("als_regularization", 0.1, 500.0, log=True)
        params["alpha"] = trial.suggest_float("alpha", 0.1, 20.0, log=True)
    elif model == "bpr":
        params["regularization"] = trial.suggest_float("bpr_regularization", 1e-4, 0.1, log=True)
        params["learning_rate"] = trial.suggest_float("bpr_learning_rate", 1e-3, 0.2, log=True)
    else:
        params["regularization"] = trial.suggest_float("torch_regularization", 1e-5, 0.1, log=True)
        params["learning_rate"] = trial.suggest_float("torch_learning_rate", 1e-3, 0.1, log=True)
    return params


def _as_distribution_params(current: dict[str, Any]) -> dict[str, Any]:
    """The current settings in the search's parameter names (clipped into its ranges) for ``enqueue_trial``."""
    model = current["model"]
    out = {"model": model, "factors": current["factors"], "iterations": int(np.clip(current["iterations"], 5, 40))}
    if model == "als":
        out["als_regularization"] = float(np.clip(current["regularization"], 0.1, 500.0))
        out["alpha"] = float(np.clip(current["alpha"], 0.1, 20.0))
    else:
        lo, hi = (1e-4, 0.1) if model == "bpr" else (1e-5, 0.1)
        out[f"{model}_regularization"] = float(np.clip(current["regularization"], lo, hi))
        lr_hi = 0.2 if model == "bpr" else 0.1
        out[f"{model}_learning_rate"] = float(np.clip(current["learning_rate"], 1e-3, lr_hi))
    return out


def _params_of(raw: dict[str, Any]) -> dict[str, Any]:
    """Optuna's parameter names back to the ``[batch.train]`` keys."""
    out: dict[str, Any] = {"model": raw["model"], "factors": int(raw["factors"]), "iterations": int(raw["iterations"])}
    for name, value in raw.items():
        if name.endswith("_regularization"):
            out["regularization"] = float(value)
        elif name.endswith("_learning_rate"):
            out["learning_rate"] = float(value)
        elif name == "alpha":
            out["alpha"] = float(value)
    return out


def _trial_row(t: Any) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "value": None if t.value is None else round(float(t.value), 6),
        "params": _params_of(t.params) if "model" in t.params else t.params,
        "seconds": round(t.duration.total_seconds(), 2) if t.duration else None,
    }
