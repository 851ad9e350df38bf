"""The top-K benchmarks' inputs (``topk``, ``topk --engine ray``): sizes per scale, K, and random factors with a
power-law seen matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

K, FACTORS = 100, 64
# scale -> (users, items, users timed for ours, users timed for implicit)
SIZES: dict[str, tuple[int, int, int, int]] = {
    "small": (20_000, 20_000, 20_000, 20_000),
    "medium": (200_000, 50_000, 200_000, 40_000),
    "large": (1_000_000, 200_000, 200_000, 10_000),
}


def synthetic(
    users: int, items: int, seed: int = 0, seen_scale: float = 4.0
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """Random factors and a power-law seen matrix: heavy-tailed per-user counts (Pareto 1.2 times ``seen_scale``,
    about 13 a user at the default), Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((users, FACTORS), dtype=np.float32) * 0.1
    item_factors = rng.standard_normal((items, FACTORS), dtype=np.float32) * 0.1
    counts = np.minimum((rng.pareto(1.2, users) * seen_scale + 1).astype(np.int64), items // 10)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    cdf = np.cumsum(popularity / popularity.sum())
    cols = np.minimum(np.searchsorted(cdf, rng.random(int(counts.sum()))), items - 1)
    rows = np.repeat(np.arange(users), counts)
    seen = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, rng.permutation(items)[cols])), (users, items))
    seen.sum_duplicates()
    return user_factors, item_factors, seen
