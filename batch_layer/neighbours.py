"""Item-item neighbours: each item's most similar items by cosine of their factors, itself excluded.

Runs the same blocked exact top-K as user candidates (:func:`batch_layer.candidates.iter_candidates`), with
unit-norm item factors on both sides and the identity as the "seen" matrix, so memory is bounded by the block.

Example
-------
>>> y = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
>>> item_neighbours(y, 1).items.tolist()
[[1], [0], [1]]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from batch_layer.candidates import Searcher, iter_candidates
from lambdarec.model.scoring import normalize_rows


class Neighbours(NamedTuple):
    """``items`` int32 ``[n_items, m]`` neighbour indices, most similar first, and their cosines ``scores``
    float32 ``[n_items, m]``; ``-1`` / ``-inf`` pad when the catalogue has fewer than ``m + 1`` items."""

    items: np.ndarray
    scores: np.ndarray


def item_neighbours(
    item_factors: np.ndarray,
    m: int,
    *,
    block: int = 4096,
    threads: int = 0,
    searcher: Searcher | None = None,
) -> Neighbours:
    """Top-``m`` neighbours of every item by cosine similarity (``batch.neighbours``), self excluded.

    Parameters
    ----------
    item_factors
        ``[n_items, f]`` item factors.
    m
        Neighbours per item.
    block
        Items scored per block (``batch.user_block``).
    threads
        CPU threads (0: every core).
    searcher
        A searcher built over :func:`lambdarec.model.scoring.normalize_rows` of the factors (GPU or FAISS);
        default exact on the CPU.

    Example
    -------
    >>> item_neighbours(np.eye(2, dtype=np.float32), 1).scores.tolist()
    [[0.0], [0.0]]
    """
    if m < 1:
        raise ValueError(f"m (batch.neighbours) must be >= 1; got {m}")
    unit = normalize_rows(np.asarray(item_factors))
    n_items = len(unit)
    itself = sp.identity(n_items, dtype=np.float32, format="csr")
    items = np.empty((n_items, m), dtype=np.int32)
    scores = np.empty((n_items, m), dtype=np.float32)
    for rows, idx, val in iter_candidates(unit, unit, itself, m, block, threads=threads, searcher=searcher):
        items[rows], scores[rows] = idx, val
    return Neighbours(items=items, scores=scores)
