"""What an arm changes in serving, as pure inputs to the one merge path: its weights and pool sizes (the arm's
``[serving]`` overrides on top of the base), a pinned snapshot, or the popular-only control.

Serving and replay both build their arms here, so an offline replay of an experiment ranks exactly as the arm
serves.

Example
-------
>>> plans = arm_plans(settings)                                   # doctest: +SKIP
>>> plans["home-v2", "diverse"].weights.mmr_lambda
0.3
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lambdarec.model.freshstate import uncovered
from lambdarec.model.rows import UserRow, UserState
from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import ArmSettings, ServingSettings, Settings

# every score part weighs 0: the pool's items tie and keep the snapshot's popularity order
POPULAR_ONLY = MergeWeights(cf=0.0, session=0.0, trending=0.0, mmr_lambda=0.0, fresh_boost=0.0)
_EMPTY_I, _EMPTY_F = np.zeros(0, np.int32), np.zeros(0, np.float32)


@dataclass(frozen=True)
class ArmPlan:
    """How serving ranks for the units in one arm."""

    experiment: str
    arm: str
    serving: ServingSettings  # the base [serving] with the arm's overrides
    weights: MergeWeights
    snapshot: str | None = None  # pinned snapshot version; None: the current one
    popular_only: bool = False


def arm_serving(base: ServingSettings, overrides: Mapping[str, Any]) -> ServingSettings:
    """``base`` with the arm's overrides (tables merged key by key, e.g. ``merge``), validated as ``[serving]``."""
    return ServingSettings.model_validate(_merged(base.model_dump(), overrides))


def arm_plan(experiment: str, arm: ArmSettings, base: ServingSettings) -> ArmPlan:
    serving = arm_serving(base, arm.serving)
    weights = POPULAR_ONLY if arm.popular_only else MergeWeights.from_settings(serving)
    return ArmPlan(experiment, arm.name, serving, weights, arm.snapshot, arm.popular_only)


def arm_plans(settings: Settings) -> dict[tuple[str, str], ArmPlan]:
    """Every arm of every experiment, keyed by (experiment, arm)."""
    return {
        (name, arm.name): arm_plan(name, arm, settings.serving)
        for name, exp in settings.experiments.items()
        for arm in exp.arms
    }


def popular_only_inputs(
    state: UserState, session_items: tuple[str, ...], exclude: frozenset[str]
) -> tuple[UserState, frozenset[str]]:
    """The popular-only control's inputs to the merge: the user's state without candidates, fresh vector or
    recent items, and the exclusions grown by everything the user has seen (batch history stays in the row,
    fresh and session items join ``exclude``), so the control recommends nothing the user already has, nor
    anything they hid or disliked."""
    row = state.batch_row
    history = None if row is None else UserRow(row.user_id, _EMPTY_I, _EMPTY_F, row.history, row.history_weights)
    seen = set(exclude) | set(session_items)
    if state.fresh is not None:
        seen.update(item for item, _ts, _w in uncovered(state.fresh, None)[0])
        seen.update(item for item, _ts in state.fresh.recent)
        seen.update((*state.fresh.hidden, *state.fresh.disliked))  # negative feedback holds in every arm
    return UserState(history, None, state.corrupt), frozenset(seen)


def _merged(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out
