"""The merge's re-rank weights and pool sizes (:mod:`lambdarec.rank.merge`), read once from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from lambdarec.rank.feedback import DemoteSettings
from lambdarec.settings import ServingSettings


@dataclass(frozen=True)
class MergeWeights:
    """Re-rank weights and pool sizes; ``from_settings`` reads them from ``[serving]`` and ``[serving.merge]``."""

    cf: float = 1.0
    session: float = 0.5
    trending: float = 0.1
    session_half_life_s: float = 1800.0
    mmr_lambda: float = 0.0
    fresh_boost: float = 2.0  # see fresh_evidence(): the session weight grows with recent fresh events
    speed_top_n: int = 100  # items each pool source brings: serving.merge.*
    neighbours_per_seed: int = 20
    trending_top_n: int = 50
    demote: DemoteSettings = field(default_factory=DemoteSettings)  # dislike, fatigue: lambdarec.rank.feedback

    @classmethod
    def from_settings(cls, s: ServingSettings) -> MergeWeights:
        pool = s.merge
        return cls(s.weight_cf, s.weight_session, s.weight_trending, s.session_half_life_s, s.mmr_lambda, s.fresh_boost,
                   pool.speed_top_n, pool.neighbours_per_seed, pool.trending_top_n,
                   DemoteSettings.from_settings(s))  # fmt: skip
