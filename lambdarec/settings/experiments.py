"""``[experiments.NAME]``: A/B experiments on the served lists, each with sticky arms and per-arm overrides.

Example (TOML)::

    [experiments.home-v2]
    salt = "home-v2-2026-12"
    traffic = 0.2

    [[experiments.home-v2.arms]]
    name = "control"
    share = 1
    popular_only = true

    [[experiments.home-v2.arms]]
    name = "diverse"
    share = 1
    serving = { mmr_lambda = 0.3, weight_trending = 0.2 }
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from lambdarec.settings.section import Section
from lambdarec.settings.serving import ServingSettings

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ArmSettings(Section):
    """One arm of an experiment: its traffic share and how serving behaves for the users in it."""

    name: str = Field(description="The arm's name, unique in its experiment; reported in responses and events.")
    share: float = Field(
        1.0,
        ge=0,
        description="The arm's share of the experiment's users, relative to the other arms' (0 closes the arm). "
        "Changing one arm's share moves users only into or out of that arm.",
    )
    serving: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of `[serving]` ranking keys for this arm, e.g. `{ mmr_lambda = 0.3 }` or "
        "`{ weight_cf = 0.8, merge = { trending_top_n = 100 } }`: merge weights, MMR, fatigue, pool sizes.",
    )
    snapshot: str | None = Field(
        None,
        description="Serve this arm from this pinned snapshot version instead of the current one (while the "
        "store keeps it; unset: the current snapshot).",
    )
    popular_only: bool = Field(
        False,
        description="The popular-only control: the snapshot's most popular items the user has not seen, with no "
        "personalisation, session re-rank or trending.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(f"arm name {name!r} must match {NAME_PATTERN} (letters, digits, '.', '_', '-')")
        return name

    @field_validator("serving")
    @classmethod
    def _serving_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(ServingSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown [serving] keys {unknown}; an arm overrides keys of [serving], e.g. mmr_lambda")
        ServingSettings.model_validate(overrides)  # the values must be valid [serving] values
        return overrides


class ExperimentSettings(Section):
    """One experiment: which share of users (or anonymous sessions) it covers and the arms they are split into."""

    salt: str = Field(
        min_length=1,
        description="Mixed into the hash of the user (or session) id; a new salt reshuffles every user, so keep "
        "it for the experiment's life.",
    )
    traffic: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of users in the experiment; raising it only adds users, lowering it only removes some.",
    )
    enabled: bool = Field(True, description="Whether serving applies the experiment (assignments still list it).")
    control: str | None = Field(None, description="The arm the report compares the others with (unset: the first arm).")
    click_types: list[str] = Field(
        default_factory=lambda: ["click"],
        description="Event types the report counts as clicks (CTR = clicks / items shown).",
    )
    conversion_types: list[str] = Field(
        default_factory=lambda: ["purchase"],
        description="Event types the report counts as conversions (conversion rate = converting users / users).",
    )
    arms: list[ArmSettings] = Field(min_length=1, description="The arms, at least one; `[[experiments.NAME.arms]]`.")

    @model_validator(mode="after")
    def _arms(self) -> ExperimentSettings:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique; got {names}")
        if sum(arm.share for arm in self.arms) <= 0:
            raise ValueError("at least one arm needs a share > 0")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not an arm; arms: {names}")
        return self

    @property
    def control_arm(self) -> str:
        """The control arm's name."""
        return self.control or self.arms[0].name


def check_names(experiments: dict[str, ExperimentSettings]) -> dict[str, ExperimentSettings]:
    """The experiments, their names checked (they travel in headers, events and report paths)."""
    bad = [name for name in experiments if not re.fullmatch(NAME_PATTERN, name)]
    if bad:
        raise ValueError(f"experiment names {bad} must match {NAME_PATTERN} (letters, digits, '.', '_', '-')")
    return experiments
