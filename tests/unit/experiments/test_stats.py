"""The report's statistics: interval coverage, test size and power, and the sample-ratio check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lambdarec.experiments.stats import lift, proportion, ratio_rate, sample_ratio


def test_wilson_interval_matches_the_textbook_values() -> None:
    zero = proportion(0, 10, 0.95)
    assert zero.value == 0 and zero.ci[0] == 0 and zero.ci[1] == pytest.approx(0.2775, abs=1e-4)
    half = proportion(50, 100, 0.95)
    assert half.ci == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert math.isnan(proportion(0, 0, 0.95).value)


def test_ratio_rate_is_clustered_by_user() -> None:
    """One user with every click makes the CTR far less certain than the same totals spread over users."""
    shown = np.full(100, 10.0)
    spread = ratio_rate(np.full(100, 1.0), shown, 0.95)
    lumped = ratio_rate(np.r_[np.full(1, 100.0), np.zeros(99)], shown, 0.95)
    assert spread.value == lumped.value == pytest.approx(0.1)
    assert lumped.se > 5 * spread.se


def simulate(rng: np.random.Generator, p_control: float, p_arm: float, users: int = 2000):
    shown = rng.integers(5, 20, size=(2, users)).astype(float)
    clicks = rng.binomial(shown.astype(int), np.array([[p_control], [p_arm]])).astype(float)
    return ratio_rate(clicks[1], shown[1], 0.95), ratio_rate(clicks[0], shown[0], 0.95)


def test_no_effect_is_called_significant_about_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    calls = [lift(*simulate(rng, 0.05, 0.05), 0.95).significant for _ in range(400)]
    assert 0.02 <= np.mean(calls) <= 0.09


def test_lift_intervals_cover_the_true_lift_and_a_real_lift_is_found() -> None:
    rng = np.random.default_rng(2)
    found = [lift(*simulate(rng, 0.05, 0.06), 0.95) for _ in range(300)]
    covered = np.mean([f.ci[0] <= 0.2 <= f.ci[1] for f in found])
    assert 0.91 <= covered <= 0.98
    assert np.mean([f.significant and f.value > 0 for f in found]) > 0.8


def test_sample_ratio_mismatch_is_flagged_only_when_real() -> None:
    assert not sample_ratio({"a": 5030, "b": 4970}, {"a": 1, "b": 1}).mismatch
    assert sample_ratio({"a": 5300, "b": 4700}, {"a": 1, "b": 1}).mismatch
    assert not sample_ratio({"a": 2510, "b": 7490}, {"a": 1, "b": 3}).mismatch
    closed = sample_ratio({"a": 100, "b": 100, "c": 3}, {"a": 1, "b": 1, "c": 0})
    assert closed.mismatch and closed.p_value == 0.0
