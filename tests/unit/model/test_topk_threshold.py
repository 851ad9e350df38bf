"""Top-K behind a guessed threshold: equal to a plain full sort on random and adversarial scores, whatever the guess.

The guess may only cost time: a row with K or more scores at or above it gets its exact top-K, a row with fewer
is reported short and selected again over its full row.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from lambdarec.model.scoring import Exclusions, TileMask, guessed_topk_scores, redo_short, topk_scores
from lambdarec.model.survivors import best_of_rows, survivor_keys
from lambdarec.model.topk import Workspace, decode_descending, encode_descending
from lambdarec.model.topk_threshold import (
    FLOOR_MARGIN,
    FLOOR_SPAN,
    ThresholdGuess,
    ThresholdSelection,
    hit_words,
)
from tests.numeric import assert_same_ranking, exact_scores
from tests.unit.model.test_topk import brute_force


def select(scores: np.ndarray, thresholds: np.ndarray, k: int, widths: list[int] | None = None):
    """ThresholdSelection over ``scores`` fed in column tiles of ``widths``."""
    sel = ThresholdSelection(np.asarray(thresholds, np.float32), scores.shape[1], k, Workspace())
    first = 0
    for w in widths or [scores.shape[1]]:
        sel.add(np.ascontiguousarray(scores[:, first : first + w]), first)
        first += w
    return sel.result()


def check_against_sort(scores: np.ndarray, thresholds: np.ndarray, k: int, widths: list[int] | None = None) -> None:
    idx, vals, short = select(scores, thresholds, k, widths)
    passing = (scores >= np.asarray(thresholds, np.float32)[:, None]).sum(axis=1)
    np.testing.assert_array_equal(short, passing < k)
    ref_idx, ref_vals = brute_force(scores + np.float32(0), k)  # + 0: -0.0 and 0.0 tie, as in a sort
    full = ~short
    np.testing.assert_array_equal(idx[full], ref_idx[full])
    np.testing.assert_array_equal(vals[full], ref_vals[full])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 4099])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_selection_equals_a_full_sort_on_random_scores_and_thresholds(n: int, k: int) -> None:
    rng = np.random.default_rng(n * 7 + k)
    scores = rng.standard_normal((41, n)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    thresholds = rng.uniform(-1.0, 3.0, 41)  # some rows keep many survivors, some are short
    check_against_sort(scores, thresholds, k)


@pytest.mark.parametrize("widths", [[50, 50], [7, 93], [300, 1, 99, 600], [64, 64, 872]])
def test_selection_over_column_tiles_equals_a_full_sort_with_ties_across_tiles(widths: list[int]) -> None:
    rng = np.random.default_rng(len(widths))
    n = sum(widths)
    scores = rng.integers(-20, 20, size=(13, n)).astype(np.float32)  # heavy ties, negatives, zeros
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    scores[:, 5] = -0.0
    thresholds = np.quantile(scores[:, :], 0.9, axis=1).astype(np.float32) - rng.integers(0, 3, 13)
    check_against_sort(scores, thresholds, 40, widths)


def test_adversarial_rows_all_equal_all_excluded_fewer_than_k_and_nan_thresholds() -> None:
    k = 30
    scores = np.random.default_rng(5).standard_normal((6, 200)).astype(np.float32)
    scores[0] = 0.25  # all equal: every item ties; the lowest indices win
    scores[1] = -np.inf  # every item seen
    scores[2, 20:] = -np.inf  # 20 unseen items, fewer than k
    scores[3] = -np.abs(scores[3])  # only negative scores
    thresholds = np.array([0.25, -np.inf, -1e30, -10.0, np.nan, np.float32(np.finfo(np.float32).min)])
    thresholds = np.maximum(thresholds, np.finfo(np.float32).min)  # as ThresholdGuess.thresholds clamps
    idx, _, short = select(scores, thresholds, k)
    assert short.tolist() == [False, True, True, False, True, False]
    np.testing.assert_array_equal(idx[0], np.arange(k))
    check_against_sort(scores, thresholds, k)


def test_shifted_tiles_select_the_same_items_and_report_the_scores_back() -> None:
    rng = np.random.default_rng(11)
    scores = rng.integers(-50, 50, size=(20, 700)).astype(np.float32) / 8  # ties; exact in float32 when shifted
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    thresholds = (rng.integers(0, 40, 20) / 8).astype(np.float32)
    sel = ThresholdSelection(thresholds, 700, 25, Workspace(), shifted=True)
    for first, stop in ((0, 400), (400, 700)):
        sel.add(np.ascontiguousarray(scores[:, first:stop] - thresholds[:, None]), first)
    idx, vals, short = sel.result()
    want_idx, want_vals, want_short = select(scores, thresholds, 25)
    np.testing.assert_array_equal(short, want_short)
    np.testing.assert_array_equal(idx[~short], want_idx[~short])
    np.testing.assert_array_equal(vals[~short], want_vals[~short])


@pytest.mark.parametrize("shifted", [False, True])
def test_a_threshold_at_the_kth_score_leaving_exactly_k_survivors_is_exact_and_one_above_is_short(
    shifted: bool,
) -> None:
    k, n = 20, 600
    rng = np.random.default_rng(21)
    scores = (rng.permuted(np.tile(np.arange(n), (4, 1)), axis=1) / 4).astype(np.float32)  # distinct, exact
    scores[:, ::7] = -np.inf  # seen items never count as survivors
    kth = np.sort(scores, axis=1)[:, -k]
    # rows 0-1: the threshold is the K-th score (exactly K survive); rows 2-3: one step above it (K - 1 survive)
    thresholds = np.where(np.arange(4) < 2, kth, kth + np.float32(0.25)).astype(np.float32)
    sel = ThresholdSelection(thresholds, n, k, Workspace(), shifted=shifted)
    for first, stop in ((0, 250), (250, 251), (251, n)):  # a one-column tile too
        tile = scores[:, first:stop] - (thresholds[:, None] if shifted else np.float32(0))
        sel.add(np.ascontiguousarray(tile), first)
    idx, vals, short = sel.result()
    assert short.tolist() == [False, False, True, True]
    ref_idx, ref_vals = brute_force(scores, k)
    np.testing.assert_array_equal(idx[:2], ref_idx[:2])
    np.testing.assert_array_equal(vals[:2], ref_vals[:2])


@pytest.mark.parametrize("widths", [[1000], [333, 667], [64, 1, 935]])
def test_ties_at_the_kth_score_on_the_threshold_go_to_the_lowest_items_across_tiles(widths: list[int]) -> None:
    k, n = 30, 1000
    rng = np.random.default_rng(len(widths))
    scores = rng.uniform(-5.0, 1.0, (3, n)).astype(np.float32)
    scores[:, rng.permutation(n)[:10]] = 4.0  # 10 clear winners per row, then 200 items tied at the K-th score
    tied = np.sort(rng.permutation(np.flatnonzero(scores[0] < 1.5))[:200])
    scores[:, tied] = 2.0
    scores[1, tied[::3]] = -np.inf  # some tied items seen
    scores[2, tied[:150]] = -np.inf  # only 50 tied items left, the last 50
    idx, vals, short = select(scores, np.full(3, 2.0, np.float32), k, widths)  # the threshold is the tie
    assert not short.any()
    for row in range(3):
        left = [c for c in tied if np.isfinite(scores[row, c])][: k - 10]
        assert sorted(idx[row, 10:].tolist()) == idx[row, 10:].tolist() == left  # lowest tied items, in order
        assert (vals[row, 10:] == 2.0).all() and (vals[row, :10] == 4.0).all()
    check_against_sort(scores, np.full(3, 2.0, np.float32), k, widths)


def test_no_survivors_at_all_leaves_every_row_short() -> None:
    idx, vals, short = select(np.full((3, 10), -np.inf, np.float32), np.zeros(3), 2)
    assert short.all() and (idx == -1).all() and np.isneginf(vals).all()
    assert ThresholdSelection(np.zeros(2, np.float32), 5, 1, Workspace()).result()[2].all()  # no tile added


def test_a_nan_score_is_never_returned() -> None:
    scores = np.array([[1.0, np.nan, 3.0, 2.0]], np.float32)
    idx, _, short = select(scores, np.array([0.0]), 3)
    assert not short[0] and idx.tolist() == [[2, 3, 0]]


@pytest.mark.parametrize("density", [0.0, 0.003, 0.2, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (17, 1000), (256, 333)])
def test_hit_words_mark_exactly_the_entries_at_or_above_the_threshold(density: float, shape) -> None:
    rng = np.random.default_rng(int(density * 1000) + shape[1])
    scores = rng.random(shape).astype(np.float32)
    thresholds = np.full(shape[0], 1.0 - density, np.float32)
    thresholds[::2] -= 0.1
    words = hit_words(scores, thresholds, Workspace())
    bits = np.unpackbits(words.view(np.uint8), bitorder="little").astype(bool)
    assert len(bits) % 64 == 0 and len(bits) >= scores.size
    np.testing.assert_array_equal(np.flatnonzero(bits), np.flatnonzero(scores >= thresholds[:, None]))


@pytest.mark.parametrize("shape", [(1, 1), (2, 64), (3, 70), (9, 1000)])
@pytest.mark.parametrize("shifted", [False, True])
def test_survivor_keys_encode_row_descending_score_and_column_of_every_hit(shape, shifted: bool) -> None:
    rng = np.random.default_rng(shape[1])
    scores = rng.standard_normal(shape).astype(np.float32)
    scores.reshape(-1)[::7] = -0.0  # ties with 0.0 once encoded
    scores.reshape(-1)[::11] = 0.0
    thresholds = rng.standard_normal(shape[0]).astype(np.float32) if not shifted else np.zeros(shape[0], np.float32)
    adds = rng.standard_normal(shape[0]).astype(np.float32) if shifted else np.zeros(shape[0], np.float32)
    offset, col_bits = 5000, 14
    keys = survivor_keys(hit_words(scores, thresholds, Workspace()), scores, adds, offset, col_bits)
    rows, cols = np.nonzero(scores >= thresholds[:, None])
    values = scores[rows, cols] + adds[rows] + np.float32(0)
    want = (
        (rows.astype(np.uint64) << np.uint64(32 + col_bits))
        | (encode_descending(values).astype(np.uint64) << np.uint64(col_bits))
        | (cols + offset).astype(np.uint64)
    )
    np.testing.assert_array_equal(keys, want)  # in flat order, as numpy's nonzero
    assert np.array_equal(decode_descending(keys >> np.uint64(col_bits)), values)


def test_serving_and_the_speed_layer_score_without_loading_numba() -> None:
    """A one-user top-K (serving, fold-in) compiles no kernel, and importing serving and the speed layer loads no
    numba: only the batch layer's guessed selection needs it at once (serving's merge kernel loads in the
    background when the service starts, lambdarec.rank.kernel)."""
    code = (
        "import sys, numpy as np\n"
        "import serving_layer.app, speed_layer.consumer\n"
        "from lambdarec.model.scoring import topk_scores\n"
        "topk_scores(np.ones(4, np.float32), np.eye(4, dtype=np.float32), 2, exclude=[[1]])\n"
        "print('NUMBA', 'numba' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "NUMBA False" in proc.stdout, proc.stdout + proc.stderr


def test_the_kernels_compile_per_process_where_no_cache_folder_is_writable() -> None:
    """A read-only image without NUMBA_CACHE_DIR: numba finds no cache location (simulated by allowing it only the
    zip-file locator); the kernels still run, and the log says why each process compiles them again."""
    code = (
        "import numpy as np\n"
        "from lambdarec.model.survivors import survivor_keys\n"
        "words = np.array([0b101], np.uint64)\n"
        "print('KEYS', survivor_keys(words, np.ones((1, 3), np.float32), np.zeros(1, np.float32), 0, 2).tolist())"
    )
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "_ZipCacheLocator", "LAMBDAREC_LOG_FORMAT": "json"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    one = int(encode_descending(np.ones(1, np.float32))[0]) << 2
    assert f"KEYS [{one}, {one | 2}]" in proc.stdout, proc.stdout
    assert "numba.cache_unavailable" in proc.stdout + proc.stderr


def test_tile_mask_masks_each_tiles_own_cells() -> None:
    seen = sp.random(9, 50, density=0.2, format="csr", random_state=1)
    want = np.where(seen.toarray() != 0, -np.inf, 0.0)
    got = np.zeros((9, 50), np.float32)
    mask = TileMask(seen.indptr, seen.indices)
    for first in (0, 16, 32, 48):
        tile = np.zeros((9, min(16, 50 - first)), np.float32)
        mask.apply(tile, first)
        got[:, first : first + tile.shape[1]] = tile
    np.testing.assert_array_equal(got, want)


def learnt_guess(items: np.ndarray, queries: np.ndarray, k: int) -> ThresholdGuess:
    guess = ThresholdGuess(items, k)
    guess.learn(queries, np.sort(queries @ items.T, axis=1)[:, -k])
    assert guess.ready
    return guess


def case(users: int = 600, items: int = 3000, f: int = 12, seed: int = 3):
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((users, f)).astype(np.float32)
    item_factors = rng.standard_normal((items, f)).astype(np.float32)
    counts = np.minimum(rng.zipf(1.5, users), items)
    counts[:5] = [items, items - 1, items - 50, items - 150, 0]  # nearly everything seen, k > unseen
    rows = np.repeat(np.arange(users), counts)
    cols = np.concatenate([rng.permutation(items)[:c] for c in counts])
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), (users, items))
    queries[5] = 0.0  # every score 0: all tie
    queries[6] = -queries[6] * 1e3  # large negative and positive scores
    return queries, item_factors, seen


# learnt; far too high (every row short); far too low (every item survives); unsafe (no guess made: all redone)
@pytest.mark.parametrize("z", [None, 50.0, -50.0, 1e30])
def test_topk_scores_with_a_guess_equals_brute_force_whatever_the_guess(z: float | None) -> None:
    queries, items, seen = case()
    k = 100
    guess = learnt_guess(items, queries[300:], k)
    if z is not None:
        guess.z = z
    idx, vals = topk_scores(queries, items, k, seen, guess=guess)
    exact = exact_scores(queries, items, seen)
    ref = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    ref = np.where(np.isneginf(np.take_along_axis(exact, ref, 1)), -1, ref)
    assert_same_ranking(idx, ref, exact)
    assert (idx[0] == -1).all() and (idx[1, 1:] == -1).all() and (idx[2, 50:] == -1).all()
    unseen = np.setdiff1d(np.arange(items.shape[0]), seen[5].indices)
    np.testing.assert_array_equal(idx[5], unseen[:k])  # all-equal scores: the lowest unseen item indices
    np.testing.assert_allclose(vals[idx >= 0], exact[np.nonzero(idx >= 0)[0], idx[idx >= 0]], rtol=1e-4, atol=1e-3)


def test_short_rows_are_reported_and_left_for_the_caller() -> None:
    queries, items, seen = case(users=300)
    guess = learnt_guess(items, queries, 20)
    items_t = np.ascontiguousarray(items.T)
    _, _, short = guessed_topk_scores(queries, items_t, 20, Exclusions(seen.indptr, seen.indices), guess=guess)
    assert short[:4].all()  # fewer than k unseen items: always short
    assert short.mean() < 0.2
    _, _, none_short = guessed_topk_scores(queries, items_t, 20, None)
    assert not none_short.any()  # no guess: every row filled


def test_the_guess_learns_a_low_quantile_and_refuses_another_k() -> None:
    queries, items, _ = case(users=2000, seed=8)
    guess = ThresholdGuess(items, 50)
    np.testing.assert_allclose(guess.mean, items.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(guess.cov, np.cov(items.T, bias=True), atol=1e-5)
    assert not guess.ready
    with pytest.raises(RuntimeError, match="before learn"):
        guess.thresholds(queries)
    kth = np.sort(queries @ items.T, axis=1)[:, -50]
    guess.learn(queries, kth)
    below = (kth < guess.thresholds(queries)).mean()
    assert 0.0 < below < 0.05  # a few rows expected short, most not
    with pytest.raises(ValueError, match="k=50"):
        topk_scores(queries[:3], items, 10, guess=guess)


def test_rows_the_first_guess_was_too_high_for_are_filled_exactly_by_the_second_guess() -> None:
    queries, items, seen = case()
    k = 100
    guess = learnt_guess(items, queries[300:], k)
    guess.z = guess.z_floor + 2.0  # a first guess far too high: nearly every row short
    items_t = np.ascontiguousarray(items.T)
    excl = Exclusions(seen.indptr, seen.indices)
    idx, vals, short = guessed_topk_scores(queries, items_t, k, excl, guess=guess)
    assert short.mean() > 0.9
    exact = exact_scores(queries, items, seen)
    kth = np.sort(exact, axis=1)[:, -k]  # -inf where fewer than k unseen items
    second = guess.thresholds(queries, z=guess.z_floor)
    beyond = short & ~(kth >= second)  # their K-th score under the second guess too (or no safe guess)
    assert beyond[:3].all() and 3 < beyond.sum() < 0.1 * short.sum()
    full = redo_short(short, queries, items_t, k, excl, idx, vals, guess=guess)
    assert full == beyond.sum()  # only those rows go over their full rows
    ref = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    ref = np.where(np.isneginf(np.take_along_axis(exact, ref, 1)), -1, ref)
    assert_same_ranking(idx, ref, exact)
    np.testing.assert_allclose(vals[idx >= 0], exact[np.nonzero(idx >= 0)[0], idx[idx >= 0]], rtol=1e-4, atol=1e-3)


def test_the_second_guess_sits_under_the_lowest_learnt_ratio_but_never_far_under_z() -> None:
    queries, items, _ = case(users=2000, seed=8)
    kth = np.sort(queries @ items.T, axis=1)[:, -50]
    mean, dev = ThresholdGuess(items, 50).moments(queries)
    guess = ThresholdGuess(items, 50)
    guess.learn(queries, kth)
    usable = dev > 0  # a zero query (case's row 5) has no spread: not learnt from
    lowest = float(((kth[usable] - mean[usable]) / dev[usable]).min())
    assert guess.z_floor == pytest.approx(max(lowest, guess.z - FLOOR_SPAN) - FLOOR_MARGIN, abs=1e-4)
    assert (kth >= guess.thresholds(queries, z=guess.z_floor)).all()  # every learnt query passes the second
    outlier = ThresholdGuess(items, 50)
    outlier.learn(queries, np.where(np.arange(2000) == 7, mean - 10 * dev, kth))  # one query far below the rest
    assert outlier.z_floor == pytest.approx(outlier.z - FLOOR_SPAN - FLOOR_MARGIN)


def test_best_of_rows_takes_each_rows_first_k_keys_and_marks_rows_with_fewer_short() -> None:
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((6, 300)).astype(np.float32)
    thresholds = np.array([-9, 0.5, 3.5, 1.0, np.inf, -1.0], np.float32)  # row 2 has few survivors, row 4 none
    keys = np.sort(survivor_keys(hit_words(scores, thresholds, Workspace()), scores, np.zeros(6, np.float32), 0, 9))
    idx, vals, short = best_of_rows(keys, 6, 20, 9)
    passing = (scores >= thresholds[:, None]).sum(axis=1)
    np.testing.assert_array_equal(short, passing < 20)
    assert short[[2, 4]].all() and (idx[short] == -1).all() and np.isneginf(vals[short]).all()
    ref_idx, ref_vals = brute_force(scores, 20)
    np.testing.assert_array_equal(idx[~short], ref_idx[~short])
    np.testing.assert_array_equal(vals[~short], ref_vals[~short])
