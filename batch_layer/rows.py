"""The store rows of a snapshot: each user's candidates with their history, each item's neighbours.

Shared by the local engine (:mod:`batch_layer.publish`) and the Ray actors (:mod:`batch_layer.ray_actors`), so
both write the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from batch_layer.candidates import CandidateBlock
from lambdarec.store import ItemRow, UserRow

ITEM_PART = 8192  # item rows per write call


def user_rows(user_ids: np.ndarray, matrix: sp.csr_matrix, block: CandidateBlock) -> Iterator[UserRow]:
    """The store rows of one block of candidates: each user's candidates plus their history from ``matrix``."""
    m = matrix
    for row, (items, scores) in enumerate(zip(block.items, block.scores, strict=True)):
        u = int(block.users[row])
        keep = items >= 0
        lo, hi = m.indptr[u], m.indptr[u + 1]
        yield UserRow(str(user_ids[u]), items[keep], scores[keep], m.indices[lo:hi], m.data[lo:hi])


def item_rows(items: np.ndarray, scores: np.ndarray, start: int) -> Iterator[ItemRow]:
    """The neighbour rows of items ``start`` to ``start + ITEM_PART`` (fewer at the end)."""
    for i in range(start, min(start + ITEM_PART, len(items))):
        keep = items[i] >= 0
        yield ItemRow(i, items[i][keep], scores[i][keep])
