"""Requests of a block that share a fresh vector and a seen set share one speed-pool selection; each still gets
exactly the items a selection of its own gives."""

from __future__ import annotations

import numpy as np

from lambdarec.rank.block import top_unseen, top_unseen_shared


def test_shared_selection_gives_each_request_its_own_items() -> None:
    rng = np.random.default_rng(4)
    n_items, n = 50, 7
    scores = rng.normal(size=(3, n_items)).astype(np.float32)
    slot = np.array([0, 0, 1, 1, 1, -1, 2, 0, 0])  # pairs and a triple sharing a vector; one request without
    seen = rng.random((slot.size, n_items)) < 0.3
    seen[1] = seen[0]  # the variants of one event: same vector, same seen set
    seen[3] = seen[4] = seen[2]
    seen[6, : n_items - 3] = True  # fewer unseen items than n: all of them
    seen[8] = seen[7]
    seen[8, 5] = not seen[8, 5]  # same vector, another seen set: a selection of its own
    rows = np.flatnonzero(slot >= 0)
    got_rows, got_items = top_unseen_shared(scores, slot, seen, rows, n)
    for b in rows.tolist():
        _, items = top_unseen(scores[slot[b]][None], seen[b][None], n)
        assert sorted(got_items[got_rows == b].tolist()) == sorted(items.tolist()), b
    assert np.all(np.diff(got_rows) >= 0)  # ordered by request, as the block's tables expect
