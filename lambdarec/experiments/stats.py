"""The statistics of the per-arm report: rates with confidence intervals, relative lift with a two-sided test,
and the sample-ratio-mismatch check. Pure functions over per-user sums.

The unit of analysis is the user (the unit that was randomised), so a user's impressions and clicks are not
treated as independent draws: the click-through rate is a ratio of per-user sums whose variance comes from the
delta method over users; the conversion rate is the share of users who converted (Wilson interval). The lift of
an arm over control is ``m_arm / m_control - 1``, its interval from the delta method on the log of the ratio,
and its two-sided test a z-test on the difference of the two rates (Welch, unpooled).

Example
-------
>>> rate = ratio_rate(np.array([3.0, 0.0, 1.0]), np.array([10.0, 5.0, 8.0]), 0.95)
>>> round(rate.value, 4)
0.1739
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

SRM_ALPHA = 0.001  # a sample-ratio mismatch is flagged below this p-value: the usual, conservative threshold


@dataclass(frozen=True)
class Rate:
    """A rate, its standard error and its confidence interval."""

    value: float
    se: float
    ci: tuple[float, float]

    def to_dict(self) -> dict[str, object]:
        return {"value": _num(self.value), "se": _num(self.se), "ci": [_num(self.ci[0]), _num(self.ci[1])]}


@dataclass(frozen=True)
class Lift:
    """The relative lift of an arm over control, its interval, and the two-sided test of no difference."""

    value: float
    ci: tuple[float, float]
    z: float
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return d | {"value": _num(self.value), "ci": [_num(self.ci[0]), _num(self.ci[1])], "z": _num(self.z),
                    "p_value": _num(self.p_value)}  # fmt: skip


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def z_of(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def ratio_rate(numerators: np.ndarray, denominators: np.ndarray, confidence: float) -> Rate:
    """``sum(num) / sum(den)`` over users, with the delta-method standard error of a ratio of means."""
    n = len(denominators)
    total = float(denominators.sum())
    if n == 0 or total <= 0:
        return Rate(math.nan, math.nan, (math.nan, math.nan))
    value = float(numerators.sum()) / total
    if n < 2:
        return Rate(value, math.nan, (math.nan, math.nan))
    mean_den = total / n
    residual = numerators - value * denominators  # the linearised ratio per user
    se = float(np.sqrt(residual.var(ddof=1) / n) / mean_den)
    z = z_of(confidence)
    return Rate(value, se, (max(value - z * se, 0.0), value + z * se))


def proportion(successes: int, n: int, confidence: float) -> Rate:
    """A share of users with its Wilson interval (sound near 0 and 1) and the usual standard error."""
    if n == 0:
        return Rate(math.nan, math.nan, (math.nan, math.nan))
    p = successes / n
    z = z_of(confidence)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Rate(p, math.sqrt(p * (1 - p) / n), (max(centre - half, 0.0), min(centre + half, 1.0)))


def lift(arm: Rate, control: Rate, confidence: float) -> Lift:
    """``arm / control - 1`` with a delta-method interval on the log ratio and a two-sided z-test."""
    if not (control.value > 0 and arm.value > 0 and math.isfinite(arm.se) and math.isfinite(control.se)):
        return Lift(math.nan, (math.nan, math.nan), math.nan, math.nan, False)
    ratio = arm.value / control.value
    se_log = math.sqrt((arm.se / arm.value) ** 2 + (control.se / control.value) ** 2)
    z_ci = z_of(confidence)
    ci = (ratio * math.exp(-z_ci * se_log) - 1, ratio * math.exp(z_ci * se_log) - 1)
    se_diff = math.hypot(arm.se, control.se)
    z = (arm.value - control.value) / se_diff if se_diff > 0 else math.nan
    p = float(2 * stats.norm.sf(abs(z))) if math.isfinite(z) else math.nan
    return Lift(ratio - 1, ci, z, p, bool(p < 1 - confidence))


@dataclass(frozen=True)
class SampleRatio:
    """The sample-ratio-mismatch check: do the arms' user counts follow their configured shares?"""

    chi2: float
    p_value: float
    mismatch: bool
    expected_share: dict[str, float]
    observed_share: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"chi2": _num(self.chi2), "p_value": _num(self.p_value), "alpha": SRM_ALPHA}


def sample_ratio(users: Mapping[str, int], shares: Mapping[str, float]) -> SampleRatio:
    """Pearson's chi-square of the users per arm against the arms' shares (arms with share 0 left out; users
    seen in such an arm make the check fail, since none was expected)."""
    open_arms = [a for a, s in shares.items() if s > 0]
    total_share = sum(shares[a] for a in open_arms)
    expected_share = {a: shares[a] / total_share for a in open_arms}
    total = sum(users.values())
    observed_share = {a: users.get(a, 0) / total if total else math.nan for a in shares}
    if total == 0 or len(open_arms) < 2:
        return SampleRatio(math.nan, math.nan, False, expected_share, observed_share)
    if any(users.get(a, 0) for a in shares if a not in expected_share):
        return SampleRatio(math.inf, 0.0, True, expected_share, observed_share)
    observed = np.array([users.get(a, 0) for a in open_arms], dtype=float)
    expected = np.array([expected_share[a] * total for a in open_arms])
    chi2, p = stats.chisquare(observed, expected)
    return SampleRatio(float(chi2), float(p), bool(p < SRM_ALPHA), expected_share, observed_share)
