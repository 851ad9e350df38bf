"""The merge pool's neighbours when rules remove some: each seed brings its first ``n`` neighbours that are still
allowed (neither seen nor ineligible), looking further down its precomputed row, instead of its first ``n``
neighbours of which the rules may have removed most.

Example
-------
>>> rows = np.array([[3, 4, 5, 6]]); blocked = np.array([False, False, False, True, False, False, False])
>>> seed_neighbours(rows, np.array([0]), 2, blocked).tolist()
[4, 5]
"""

from __future__ import annotations

import numpy as np


def seed_neighbours(neighbours: np.ndarray, seeds: np.ndarray, n: int, blocked: np.ndarray | None) -> np.ndarray:
    """Neighbour item indices of ``seeds``: the first ``n`` of each row, or with ``blocked`` (a mask over the items,
    True where an item may not be picked) the first ``n`` of each row that are not blocked."""
    if blocked is None:
        near = neighbours[seeds, :n]
        return near[near >= 0]
    rows = neighbours[seeds]
    allowed = (rows >= 0) & ~blocked[np.maximum(rows, 0)]
    return rows[allowed & (np.cumsum(allowed, axis=1) <= n)]
