"""The merge's pool sizes are settings (`[serving.merge]`), with defaults equal to the constants they replaced."""

from __future__ import annotations

import numpy as np

from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.settings import Settings
from tests.factories import snapshot_model

N_ITEMS = 40


def test_defaults_are_the_former_constants() -> None:
    weights = MergeWeights.from_settings(Settings.load().serving)
    assert (weights.speed_top_n, weights.neighbours_per_seed, weights.trending_top_n) == (100, 20, 50)
    assert weights == MergeWeights()


def test_trending_top_n_bounds_what_trending_brings() -> None:
    model = snapshot_model(N_ITEMS, 8, seed=0)
    trending = np.zeros(N_ITEMS, dtype=np.float32)
    trending[[33, 34, 35]] = [50.0, 40.0, 30.0]
    inp = MergeInput(model, trending=trending)
    settings = Settings.load(overrides={"serving": {"weight_trending": 5.0, "merge": {"trending_top_n": 1}}})
    narrow = merge(inp, MergeWeights.from_settings(settings.serving), k=3)
    wide = merge(inp, MergeWeights(trending=5.0), k=3)
    assert [r.source for r in wide] == ["trending"] * 3
    assert (narrow[0].item_id, narrow[0].source) == ("i33", "trending")
    assert [r.source for r in narrow[1:]] == ["popular", "popular"]
