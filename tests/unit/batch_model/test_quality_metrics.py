"""Quality-gate metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from batch_layer.quality_metrics import evaluate_gate, popular_unseen, ranking_metrics


def csr(rows: list[list[int]], n: int) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n), np.float32)
    for r, items in enumerate(rows):
        dense[r, items] = 1.0
    return sp.csr_matrix(dense)


def test_recall_and_ndcg_by_hand() -> None:
    top = np.array([[3, 1, 4], [0, 2, 5], [1, 2, 3]])
    held = csr([[1, 5], [5], []], 6)  # the third user has no holdout and is not averaged
    m = ranking_metrics(top, held, k=3)
    # user 0: hit at rank 1 of 2 held out; user 1: hit at rank 2 of 1 held out.
    recall = (1 / 2 + 1 / 1) / 2
    ndcg0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    ndcg1 = (1 / math.log2(4)) / 1
    assert m.users == 2 and m.k == 3
    assert m.recall == pytest.approx(recall)
    assert m.ndcg == pytest.approx((ndcg0 + ndcg1) / 2)


def test_cut_off_and_padding() -> None:
    top = np.array([[2, -1, 0]])
    held = csr([[0, 2]], 3)
    assert ranking_metrics(top, held, k=1).recall == 1.0  # min(K, |holdout|) = 1
    m = ranking_metrics(top, held, k=3)
    assert m.recall == pytest.approx(1.0)
    assert m.ndcg == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    with pytest.raises(ValueError, match="expected"):
        ranking_metrics(top, held, k=4)


def test_popular_unseen_skips_each_users_seen_items() -> None:
    order = np.array([4, 0, 3, 1, 2])
    seen = csr([[4, 3], [], [0, 1, 2, 3, 4], [0, 4]], 5)
    got = popular_unseen(order, seen, 3)
    assert got.tolist() == [[0, 1, 2], [4, 0, 3], [-1, -1, -1], [3, 1, 2]]


def test_popular_unseen_matches_a_loop_on_random_data() -> None:
    rng = np.random.default_rng(5)
    seen = sp.random(200, 60, density=0.2, format="csr", random_state=6)
    order = rng.permutation(60)
    got = popular_unseen(order, seen, 10)
    for u in range(200):
        expected = [i for i in order if i not in set(seen[u].indices)][:10]
        assert got[u, : len(expected)].tolist() == expected


def test_gate_drops_held_out_items_already_in_training() -> None:
    # Two users, four items; the model scores item i as i, so it always prefers the highest unseen index.
    users = np.ones((2, 1), np.float32)
    items = np.arange(4, dtype=np.float32)[:, None]
    train = csr([[3], [0, 1]], 4)
    holdout = csr([[3, 2], [1]], 4)  # user 1's only held-out item is in training: user 1 is not evaluated
    gate = evaluate_gate(users, items, train, holdout, 1, popularity_scores=np.array([9.0, 0, 0, 0]))
    assert gate.model.users == 1 and gate.model.recall == 1.0 and gate.model.ndcg == 1.0
    assert gate.popularity.recall == 0.0  # popularity recommends item 0
    with pytest.raises(ValueError, match="n_users, n_items"):
        evaluate_gate(users, items, train[:1], holdout, 1)
