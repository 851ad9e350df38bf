"""A block of requests whose trending scores come as arrays (the replay's, one per scored event) takes the head of
their order in one step for all of them (``block.top_trending``): each request must get the items, in the order,
that :class:`TrendingScores` gives one request, and the same list and scores as ``merge`` alone."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.rank import block
from lambdarec.rank.defects import nonfinite_count
from lambdarec.rank.merge import MergeInput, MergeWeights, merge, merge_many
from lambdarec.rank.trending import TrendingScores
from tests.factories import snapshot_model


@pytest.mark.parametrize("seed", range(5))
def test_the_block_head_is_the_head_of_each_rows_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        rows, n_items = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        # few distinct values: many ties, which the order breaks by item index
        scores = (rng.integers(0, 4, (rows, n_items)) * (rng.random((rows, n_items)) < 0.7)).astype(np.float32)
        seen = rng.random((rows, n_items)) < 0.3
        top_n = int(rng.integers(1, 50))
        r, items = block.top_trending(scores, seen, top_n)
        for j in range(rows):
            order = TrendingScores.of(scores[j]).order
            assert items[r == j].tolist() == order[~seen[j, order]][:top_n].tolist()


def test_poisoned_trending_arrays_rank_as_alone_and_are_counted_per_request() -> None:
    model = snapshot_model(30, 4, version="v1", seed=3)
    counts = np.linspace(0.0, 5.0, 30, dtype=np.float32)
    counts[[2, 7, 11]] = [np.nan, np.inf, -3.0]
    inputs = [MergeInput(model, trending=counts.copy(), now_s=1.0, exclude=frozenset({f"i{j}"})) for j in range(4)]
    weights = MergeWeights(cf=0.0, session=0.0, trending=1.0, trending_top_n=6)
    before = nonfinite_count("merge")
    blocked = merge_many(inputs, weights, k=8, explain=True)
    assert nonfinite_count("merge") == before + 2 * len(inputs)  # NaN and inf, in each request's array
    for inp, many in zip(inputs, blocked, strict=True):
        one = merge(inp, weights, k=8, explain=True)
        assert [(r.item_id, r.source) for r in many] == [(r.item_id, r.source) for r in one]
        assert [r.components["trending"] for r in many] == pytest.approx([r.components["trending"] for r in one])
        assert many[0].source == "trending" and many[0].item_id == "i29"
