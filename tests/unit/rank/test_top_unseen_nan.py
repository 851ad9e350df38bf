"""A corrupt item vector (a NaN score) never enters a request's speed pool ahead of a real score: the single
request's selection agrees with the block's."""

from __future__ import annotations

import numpy as np

from lambdarec.rank import block, one


def test_a_nan_score_is_never_picked_before_a_finite_one() -> None:
    scores = np.array([0.9, np.nan, 0.5, 0.1], dtype=np.float32)
    seen = np.zeros(4, dtype=bool)
    single = sorted(one.top_unseen(scores, seen, 2).tolist())
    _, items = block.top_unseen(scores[None], seen[None], 2)
    assert single == sorted(items.tolist()) == [0, 2]
