"""Exact top-K selection and scoring: equal to a brute-force sort, never returning excluded items."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lambdarec.model import scoring
from lambdarec.model.scoring import Exclusions, normalize_rows, tile_columns, topk_scores
from lambdarec.model.topk import RunningTopK, mask_excluded, select_topk
from tests.numeric import assert_same_ranking, exact_scores


def brute_force(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable descending sort: ties go to the lower column; -inf entries become -1 / -inf padding."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(scores, order, 1)
    idx = np.where(np.isneginf(vals), -1, order)
    pad = k - idx.shape[1]
    if pad > 0:
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        vals = np.pad(vals, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx.astype(np.int32), vals.astype(np.float32)


@pytest.mark.parametrize("n", [1, 7, 100, 401, 5000])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_select_topk_equals_brute_force(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 1000 + k)
    scores = rng.standard_normal((37, n)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    idx, vals = select_topk(scores, k)
    ref_idx, ref_vals = brute_force(scores, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)


def test_ties_go_to_the_lower_item_and_negative_scores_order_correctly() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(-3, 3, size=(50, 2000)).astype(np.float32)  # heavy ties, negatives, zeros
    scores[:, 7] = -0.0
    idx, vals = select_topk(scores, 300)
    ref_idx, ref_vals = brute_force(scores, 300)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)


def test_rows_with_fewer_items_than_k_are_padded() -> None:
    scores = np.full((2, 5), -np.inf, dtype=np.float32)
    scores[0, [1, 3]] = [0.5, 2.0]
    idx, vals = select_topk(scores, 4)
    assert idx.tolist() == [[3, 1, -1, -1], [-1, -1, -1, -1]]
    assert vals[0, :2].tolist() == [2.0, 0.5] and np.isneginf(vals[0, 2:]).all() and np.isneginf(vals[1]).all()


def test_select_topk_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="float32"):
        select_topk(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="k must be"):
        select_topk(np.zeros((2, 3), np.float32), 0)


def test_mask_excluded_uses_row_slices_of_a_csr() -> None:
    seen = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.float32))
    scores = np.zeros((2, 3), np.float32)
    mask_excluded(scores, seen.indptr[1:], seen.indices)  # rows 1 and 2 of seen
    assert np.isneginf(scores).tolist() == [[False, True, False], [True, True, False]]


def test_topk_scores_excludes_items_in_every_accepted_form() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((300, 8)).astype(np.float32)
    items = rng.standard_normal((900, 8)).astype(np.float32)
    seen = sp.random(300, 900, density=0.05, format="csr", random_state=2)
    scores = queries @ items.T
    scores[seen.toarray() != 0] = -np.inf
    ref_idx, _ = brute_force(scores, 20)
    exact = exact_scores(queries, items, seen)  # BLAS rounding may order near-ties either way
    lists = [seen[i].indices for i in range(300)]
    for exclude in (seen, lists, Exclusions(seen.indptr, seen.indices)):
        idx, _ = topk_scores(queries, items, 20, exclude)
        assert_same_ranking(idx, ref_idx, exact)
    one, _ = topk_scores(queries[0], items, 20, [lists[0]])
    assert_same_ranking(one[0], ref_idx[0], exact[0])


def test_topk_scores_rejects_mismatched_inputs() -> None:
    items = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="factors"):
        topk_scores(np.ones((2, 2), np.float32), items, 1)
    with pytest.raises(ValueError, match="one per query"):
        topk_scores(np.ones((2, 3), np.float32), items, 1, exclude=[[0]])
    with pytest.raises(ValueError, match="outside"):
        topk_scores(np.ones((1, 3), np.float32), items, 1, exclude=[[4]])


def test_tiles_bound_the_score_buffer_and_split_items_evenly() -> None:
    assert tile_columns(10, 128) == 10
    assert tile_columns(20_000, 128, 1 << 21) == 10_000  # two equal tiles of at most 2**21 / 128 = 16384
    assert tile_columns(1 << 30, 1) == scoring.TILE_ELEMENTS
    assert tile_columns(5, 1 << 30) == 1


@pytest.mark.parametrize("widths", [[50, 50], [7, 93], [300, 1, 99, 600], [1000]])
def test_running_topk_over_tiles_equals_one_pass(widths: list[int]) -> None:
    rng = np.random.default_rng(len(widths))
    n = sum(widths)
    scores = rng.integers(-20, 20, size=(13, n)).astype(np.float32)  # ties across tiles
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    top = RunningTopK(13, n, 40)
    first = 0
    for w in widths:
        top.add(np.ascontiguousarray(scores[:, first : first + w]), first)
        first += w
    idx, vals = top.result()
    ref_idx, ref_vals = brute_force(scores, 40)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(vals, ref_vals)


def test_topk_scores_over_many_tiles_equals_brute_force(monkeypatch) -> None:
    monkeypatch.setattr(scoring, "TILE_ELEMENTS", 128 * 300)  # 300-item tiles
    rng = np.random.default_rng(4)
    queries = rng.standard_normal((200, 6)).astype(np.float32)
    items = rng.standard_normal((2000, 6)).astype(np.float32)
    seen = sp.random(200, 2000, density=0.03, format="csr", random_state=5)
    scores = queries @ items.T
    scores[seen.toarray() != 0] = -np.inf
    idx, _ = topk_scores(queries, items, 50, seen)
    assert_same_ranking(idx, brute_force(scores, 50)[0], exact_scores(queries, items, seen))


def test_mask_excluded_with_an_offset_touches_only_its_tile() -> None:
    scores = np.zeros((2, 2), np.float32)  # columns 3 and 4 of a 6-column matrix
    mask_excluded(scores, np.array([0, 3, 4]), np.array([0, 3, 5, 4]), offset=3)
    assert np.isneginf(scores).tolist() == [[True, False], [False, True]]


def test_normalize_rows_keeps_zero_rows() -> None:
    out = normalize_rows(np.array([[0.0, 2.0], [0.0, 0.0]]))
    assert out.tolist() == [[0.0, 1.0], [0.0, 0.0]]
