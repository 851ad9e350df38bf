"""The fused kernel's selections (``lambdarec.rank.fused_kernels``) pick exactly what a full sort picks: the fresh
vector's best unseen items (ties at the last place to the lowest indices, ``-0.0`` level with ``0.0``) and a
list's places ``offset`` to ``need - 1`` by score, then popularity, then index; on scores with many ties, negative
values and both zeros, for short lists (kept sorted as the pool is read) and long ones (selected, then sorted)."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.rank import fused_kernels as kernels


def _scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """float32 scores with heavy ties: a few distinct values (both zeros among them), some spread ones."""
    levels = np.array([-2.5, -1.0, -0.0, 0.0, 0.25, 1.0, 3.0], dtype=np.float32)
    scores = rng.choice(levels, n).astype(np.float32)
    spread = rng.random(n) < 0.5
    scores[spread] = rng.normal(0, 2, int(spread.sum())).astype(np.float32)
    return scores


@pytest.mark.parametrize("seed", range(6))
def test_the_best_unseen_items_are_a_full_sorts_with_ties_to_the_lowest_indices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n_items = int(rng.integers(1, 400))
        scores, seen = _scores(rng, n_items), rng.random(n_items) < rng.random()
        index = np.arange(n_items)
        unseen = np.flatnonzero(~seen)
        n = int(rng.integers(0, n_items + 2))
        # a full sort: score descending (-0.0 as 0.0), then index ascending
        expected = unseen[np.lexsort((unseen, -(scores[unseen] + np.float32(0.0))))][:n]
        got = kernels._top_unseen(scores, seen, n, index)
        assert sorted(got.tolist()) == sorted(expected.tolist())


def test_both_zeros_tie_and_go_to_the_lowest_index() -> None:
    scores = np.array([0.0, -0.0, 0.0, -0.0, -1.0], dtype=np.float32)
    seen = np.zeros(5, dtype=np.bool_)
    assert sorted(kernels._top_unseen(scores, seen, 3, np.arange(5)).tolist()) == [0, 1, 2]
    scores = np.array([-0.0, 0.0, -0.0, 0.0, 1.0], dtype=np.float32)
    assert sorted(kernels._top_unseen(scores, seen, 2, np.arange(5)).tolist()) == [0, 4]


@pytest.mark.parametrize("seed", range(6))
def test_a_lists_places_are_a_full_sorts_for_short_and_long_lists(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for _ in range(200):
        n_items = int(rng.integers(1, 300))
        popular_rank = rng.permutation(n_items).astype(np.int64)
        items = np.sort(rng.choice(n_items, int(rng.integers(0, n_items + 1)), replace=False)).astype(np.int64)
        total = _scores(rng, items.size)
        need = int(rng.choice([1, 2, 5, 10, kernels.SHORT_LIST, kernels.SHORT_LIST + 1, 80, 400]))
        offset = int(rng.integers(0, need))
        expected = np.lexsort((popular_rank[items], -(total + np.float32(0.0))))[:need][offset:]
        got = kernels._picks(items, total, popular_rank, need, offset)
        assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_the_batch_scores_find_their_pool_items_by_map_and_by_search_alike(seed: int) -> None:
    """Each pooled item's ``cf`` is its first candidate's batch score (an unscored item the lowest known one),
    min-max scaled, whether the candidates find their place through the catalogue's map (a small catalogue) or
    by binary search (a catalogue larger than ``DENSE_PER_CANDIDATE`` items per candidate)."""
    rng = np.random.default_rng(200 + seed)
    for _ in range(100):
        n_candidates = int(rng.integers(1, 60))
        small, large = n_candidates * kernels.DENSE_PER_CANDIDATE, n_candidates * kernels.DENSE_PER_CANDIDATE + 1
        items = np.sort(rng.choice(small, int(rng.integers(1, min(small, 300))), replace=False)).astype(np.int64)
        candidates = rng.choice(small, n_candidates).astype(np.int32)  # repeats: the first score is kept
        scores = rng.normal(0, 1, n_candidates).astype(np.float32)
        first: dict[int, float] = {}
        for c, s in zip(candidates.tolist(), scores.tolist(), strict=True):
            first.setdefault(c, s)
        raw = np.array([first.get(i, np.nan) for i in items.tolist()], dtype=np.float32)
        if np.isnan(raw).all():
            expected = np.ones(items.size, dtype=np.float32)
        else:
            lo, hi = np.nanmin(raw), np.nanmax(raw)
            raw[np.isnan(raw)] = lo
            expected = np.ones_like(raw) if hi - lo < 1e-12 else (raw - lo) / np.float32(hi - lo)
        empty = np.empty(0, dtype=np.float32)
        for n_items in (small, large):
            got = kernels._cf(items, n_items, empty, candidates, scores)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
