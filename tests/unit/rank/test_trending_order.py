"""The trending order kept item by item equals a full sort of the scores at every read (ties, underflow, defects)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from lambdarec.rank.defects import nonfinite_count
from lambdarec.rank.trending import TrendingOrder, TrendingScores


def _same(got: TrendingScores, want: TrendingScores) -> None:
    assert got.order.tolist() == want.order.tolist()
    assert np.array_equal(got.scores, want.scores)


@pytest.mark.parametrize("seed", range(6))
def test_kept_order_equals_sorting_the_scores(seed: int) -> None:
    rng = random.Random(seed)
    half_life = 600.0
    kept = TrendingOrder(40, half_life)
    now = 1000.0
    for _ in range(400):
        now += rng.choice([0.0, 0.0, 1.0, 30.0, 900.0, 20_000.0])  # same-second events, and counts that decay to 0
        i = rng.randrange(40)
        count = rng.choice([1.0, 2.0, 3.0, rng.uniform(0.5, 5.0)])  # equal counts at equal times: exact ties
        kept.set(i, count, now)
        _same(kept.at(now), TrendingScores.of(kept.scores(now)))
        later = now + rng.choice([1.0, 3600.0, 100 * half_life])
        _same(kept.at(later), TrendingScores.of(kept.scores(later)))


def test_an_item_set_back_to_zero_leaves_the_order() -> None:
    kept = TrendingOrder(3, 10.0)
    kept.set(0, 1.0, 0.0)
    kept.set(1, 2.0, 0.0)
    kept.set(1, 0.0, 0.0)
    assert kept.at(0.0).order.tolist() == [0]


def test_a_poisoned_count_is_zeroed_and_counted_as_a_full_sort_does() -> None:
    kept = TrendingOrder(3, 10.0)
    kept.set(0, 1.0, 0.0)
    kept.set(2, math.nan, 0.0)
    before = nonfinite_count("merge")
    got = kept.at(0.0)
    assert got.order.tolist() == [0] and got.scores[2] == 0
    assert nonfinite_count("merge") == before + 1
    kept.set(2, 3.0, 0.0)  # a clean count again: the kept order is used
    assert kept.at(0.0).order.tolist() == [2, 0]
