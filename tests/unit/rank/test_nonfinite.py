"""Non-finite ranking inputs (issue 12, finding 1): merge and trending survive them, never return NaN or inf, and
count them in ``lambdarec_rank_nonfinite_total``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import generate_latest

from lambdarec.model.rows import FreshUser, TrendingItem, UserRow
from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.rank.defects import NONFINITE, nonfinite_count
from lambdarec.rank.trending import TrendingScores, total_counts, trending_scores
from tests.factories import snapshot_model

W = MergeWeights()


def finite(ranked) -> bool:
    return all(math.isfinite(r.score) for r in ranked) and all(
        math.isfinite(v) for r in ranked for v in r.components.values()
    )


@pytest.mark.parametrize("poison", [math.inf, math.nan, 1e308, -math.inf])
def test_one_poisoned_trending_count_leaves_the_others_ranked(poison: float) -> None:
    model = snapshot_model(40, 8)
    rows = {
        "i3@0": TrendingItem(item_id="i3", partition=0, count=poison, as_of=100.0),
        "i5@0": TrendingItem(item_id="i5", partition=0, count=4.0, as_of=100.0),
        "i9@1": TrendingItem(item_id="i9", partition=1, count=2.0, as_of=100.0),
    }
    before = nonfinite_count("trending")
    scores = trending_scores(rows, model, 100.0, 3600.0)
    assert np.isfinite(scores).all()
    assert scores[model.item_index["i5"]] == pytest.approx(4.0) and scores[model.item_index["i9"]] == pytest.approx(2.0)
    assert scores[model.item_index["i3"]] == 0.0
    assert nonfinite_count("trending") == before + 1
    counts = total_counts(rows, 100.0, 3600.0)
    assert all(math.isfinite(v) for v in counts.values()) and counts["i5"] == pytest.approx(4.0)
    out = merge(MergeInput(model, trending=scores, now_s=100.0), W, k=5, explain=True)
    assert finite(out)
    assert [r.item_id for r in out[:2]] == ["i5", "i9"] and out[0].source == "trending"
    assert out[0].components["trending"] == pytest.approx(1.0)


def test_a_raw_trending_array_with_inf_or_nan_is_cleaned_and_counted() -> None:
    model = snapshot_model(40, 8)
    raw = np.zeros(40, np.float32)
    raw[[1, 2, 3]] = [np.inf, np.nan, 5.0]
    before = nonfinite_count("merge")
    out = merge(MergeInput(model, trending=raw), W, k=3, explain=True)
    assert finite(out) and out[0].item_id == "i3"
    assert nonfinite_count("merge") == before + 2
    assert TrendingScores.of(raw).order.tolist()[0] == 3


def test_a_known_user_with_poisoned_inputs_keeps_a_ranked_finite_list() -> None:
    model = snapshot_model(40, 8, version="v1")
    row = UserRow(
        "u1",
        np.array([5, 6, 7, 8], np.int32),
        np.array([np.inf, 0.9, np.nan, 0.5], np.float32),
        np.array([1], np.int32),
        np.ones(1, np.float32),
    )
    fresh = FreshUser(user_id="u1", vector=[math.nan] * 8, basis="v1")
    trending = np.zeros(40, np.float32)
    trending[20] = np.inf
    out = merge(MergeInput(model, batch_row=row, fresh=fresh, trending=trending), W, k=4, explain=True)
    assert finite(out)
    assert len({r.score for r in out}) > 1  # still ranked, not all 0.0
    assert {r.item_id for r in out} & {"i6", "i8"}


def test_the_counter_is_exposed_for_prometheus() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(NONFINITE)
    assert b"lambdarec_rank_nonfinite_total" in generate_latest(registry)


def test_trending_order_is_by_score_then_index_whatever_the_ties() -> None:
    """The order's sort key packs the score and the index: it must give score descending, ties by index."""
    rng = np.random.default_rng(7)
    for scale in (3.0, 20.0, 1e30):  # many ties, some ties, almost none (and large floats)
        scores = (np.round(rng.random(500) * 20) * scale / 20).astype(np.float32)
        live = np.flatnonzero(scores > 0)
        expected = sorted(live.tolist(), key=lambda i: (-float(scores[i]), i))
        assert TrendingScores.of(scores).order.tolist() == expected
