"""Tune the re-rank weights on a validation window; report the winner on a later test window it never saw.

1. **Validation**: the batch job runs at ``split_at``; events in ``(split_at, validation_until]`` are replayed and
   every trial's weights (trial 0 is the current ``serving`` weights, the others drawn at random, seeded) score
   the same events in one pass (the state does not depend on the weights, so one pass serves every trial).
   The best trial by ``ndcg@K`` wins; ties go to the lower trial, so the current weights stay unless beaten.
2. **Test**: the batch job runs again at ``validation_until``, as the next nightly would, and events in
   ``(validation_until, until]`` are replayed with ``batch``, ``lambda`` (current weights) and ``lambda-tuned``.

Example
-------
>>> doc = run_tune(settings, TuneConfig("var/log.parquet", split, validation_until))   # doctest: +SKIP
>>> write_settings_toml(doc["best_weights"], Path("tuned.toml"), "replay tune")         # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import Settings, write_config
from replay.metrics import summarise
from replay.protocol import ReplayConfig, ReplayRun, run_replay
from replay.variants import Variant, make_variant

# name in the [serving] section -> MergeWeights field
WEIGHT_FIELDS = {
    "weight_cf": "cf",
    "weight_session": "session",
    "weight_trending": "trending",
    "session_half_life_s": "session_half_life_s",
    "mmr_lambda": "mmr_lambda",
    "fresh_boost": "fresh_boost",
}


@dataclass(frozen=True)
class TuneConfig:
    """What ``lambdarec replay tune`` searches over and where; defaults match the CLI's."""

    interactions: str
    split_at: datetime
    validation_until: datetime
    until: datetime | None = None
    trials: int = 30
    seed: int = 0
    sample: int | None = None
    k: int = 10
    session_gap_s: float = 1800.0
    bootstrap_draws: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.split_at < self.validation_until:
            raise ValueError("--validation-until must be after --split-at")
        if self.until is not None and not self.validation_until < self.until:
            raise ValueError("--until must be after --validation-until")
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1; got {self.trials}")


def weights_dict(w: MergeWeights) -> dict[str, float]:
    """``MergeWeights`` as the ``[serving]`` keys it comes from."""
    return {key: float(getattr(w, attr)) for key, attr in WEIGHT_FIELDS.items()}


def draw_trials(base: MergeWeights, trials: int, seed: int) -> list[MergeWeights]:
    """``base`` first, then ``trials - 1`` random weight sets (seeded; log-uniform where scale matters).

    Example
    -------
    >>> draw_trials(MergeWeights(), 3, seed=1) == draw_trials(MergeWeights(), 3, seed=1)
    True
    """
    rng = np.random.default_rng(seed)

    def log_uniform(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    out = [base]
    for _ in range(trials - 1):
        out.append(
            replace(
                base,
                cf=round(log_uniform(0.25, 2.0), 4),
                session=0.0 if rng.random() < 0.1 else round(log_uniform(0.01, 4.0), 4),
                trending=0.0 if rng.random() < 0.3 else round(log_uniform(0.005, 1.0), 4),
                session_half_life_s=round(log_uniform(300.0, 7 * 86400.0), 1),
                mmr_lambda=0.0 if rng.random() < 0.5 else round(float(rng.uniform(0.0, 0.3)), 4),
                fresh_boost=0.0 if rng.random() < 0.2 else round(log_uniform(0.25, 10.0), 4),
            )
        )
    return out


def run_tune(settings: Settings, cfg: TuneConfig) -> dict[str, Any]:
    """Run the validation search and the test replay; see the module docstring for the protocol."""
    base = MergeWeights.from_settings(settings.serving)
    trials = draw_trials(base, cfg.trials, cfg.seed)
    names = [f"trial-{i:03d}" for i in range(len(trials))]
    val_variants = [replace(make_variant("lambda", w), name=n) for n, w in zip(names, trials, strict=True)]
    val = run_replay(settings, _replay_config(cfg, cfg.split_at, cfg.validation_until), val_variants)
    val_doc = _summary(val, cfg)
    key = f"ndcg@{cfg.k}"
    scores = [val_doc["variants"][n][key] for n in names]
    best = int(np.argmax(scores))  # first maximum: the current weights win ties
    test_variants: list[Variant] = [
        make_variant("batch", base),
        make_variant("lambda", base),
        replace(make_variant("lambda", trials[best]), name="lambda-tuned"),
    ]
    test = run_replay(settings, _replay_config(cfg, cfg.validation_until, cfg.until), test_variants)
    test_doc = _summary(test, cfg)
    return {
        "metric": key,
        "best_trial": best,
        "best_weights": weights_dict(trials[best]),
        "current_weights": weights_dict(base),
        "validation": {
            "window": [cfg.split_at.isoformat(), cfg.validation_until.isoformat()],
            "events_scored": val.board.events,
            "users": val.board.users,
            "trials": [
                {
                    "name": n,
                    "weights": weights_dict(w),
                    key: val_doc["variants"][n][key],
                    "ci": val_doc["variants"][n]["ci"][key],
                }
                for n, w in zip(names, trials, strict=True)
            ],
            "timings_s": val.timings_s,
        },
        "test": {
            "window": [cfg.validation_until.isoformat(), datetime.fromtimestamp(test.until_ms / 1000, UTC).isoformat()],
            "events_scored": test.board.events,
            "users": test.board.users,
            "variants": test_doc["variants"],
            "ratios": test_doc["ratios"],
            "timings_s": test.timings_s,
        },
    }


def _replay_config(cfg: TuneConfig, start: datetime, end: datetime | None) -> ReplayConfig:
    return ReplayConfig(
        cfg.interactions,
        split_at=start,
        until=end,
        ks=(cfg.k,),
        sample=cfg.sample,
        seed=cfg.seed,
        session_gap_s=cfg.session_gap_s,
        bootstrap_draws=cfg.bootstrap_draws,
        progress=cfg.progress,
    )


def _summary(run: ReplayRun, cfg: TuneConfig) -> dict[str, Any]:
    return summarise(
        run.board,
        (cfg.k,),
        catalogue=run.catalogue,
        popularity=run.popularity,
        draws=cfg.bootstrap_draws,
        seed=cfg.seed,
        baselines=("batch", "lambda"),
    )


def write_settings_toml(weights: dict[str, float], path: Path, comment: str) -> Path:
    """Write ``weights`` as a ``[serving]`` section of a settings file that ``--config`` reads.

    The file is checked by loading it back through :meth:`Settings.load` before it replaces ``path``.
    """
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += ["[serving]", *(f"{key} = {float(value)!r}" for key, value in weights.items())]
    return write_config(path, "\n".join(lines) + "\n")
