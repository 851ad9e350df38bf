"""Score query vectors against item factors and keep each query's top K, excluding items it has seen.

The batch layer runs :func:`topk_scores` over every user (in threads, block by block); serving and replay run it
for one user's folded-in vector. Both get the same items in the same order for the same inputs.

Example
-------
>>> items = np.eye(3, dtype=np.float32)
>>> idx, val = topk_scores(np.array([0.2, 0.9, 0.5], dtype=np.float32), items, 2, exclude=[[1]])
>>> idx.tolist()
[[2, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lambdarec.model.topk import RunningTopK, Workspace, mask_excluded

# Queries scored together. The sgemm repacks the item factors on every call, so a call must serve many queries:
# 256 rows made the whole top-K 10-20% faster than 64 at 50k items (measured on a 2-core AVX-512 VM).
CHUNK_ROWS = 256
# Default score-tile elements (64 MiB of float32); ``batch.score_tile_mb`` sets it. Larger tiles mean fewer, wider
# tiles: less per-tile selection work and fewer sgemm calls; the memory is per scoring thread.
TILE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Exclusions:
    """Items to exclude per query, in CSR form: query ``q`` excludes ``indices[indptr[q]:indptr[q + 1]]``."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def of(cls, exclude: object, queries: int, n_items: int) -> Exclusions | None:
        """Normalise ``None``, :class:`Exclusions`, a CSR matrix (one row per query) or a list of index lists.

        Example
        -------
        >>> Exclusions.of([[1, 2], []], 2, 5).indptr.tolist()
        [0, 2, 2]
        """
        if exclude is None:
            return None
        if isinstance(exclude, Exclusions):
            if len(exclude.indptr) != queries + 1:
                raise ValueError(f"exclude has {len(exclude.indptr) - 1} rows; expected one per query ({queries})")
            return exclude
        if hasattr(exclude, "indptr") and hasattr(exclude, "indices"):
            indptr, indices = np.asarray(exclude.indptr), np.asarray(exclude.indices)
            shape = getattr(exclude, "shape", (len(indptr) - 1, n_items))
            if shape[0] != queries or shape[1] != n_items:
                raise ValueError(
                    f"exclude has shape {tuple(shape)}; expected one row per query and one column per item "
                    f"({queries}, {n_items})"
                )
        elif isinstance(exclude, Sequence):
            if len(exclude) != queries:
                raise ValueError(f"exclude has {len(exclude)} lists; expected one per query ({queries})")
            lists = [np.asarray(items, dtype=np.int64).reshape(-1) for items in exclude]
            indptr = np.zeros(queries + 1, dtype=np.int64)
            np.cumsum([len(x) for x in lists], out=indptr[1:])
            indices = np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64)
        else:
            raise TypeError(f"exclude must be None, a CSR matrix or a list of index lists; got {type(exclude)}")
        if indices.size and (indices.min() < 0 or indices.max() >= n_items):
            raise ValueError(f"exclude lists an item index outside [0, {n_items})")
        return cls(indptr=indptr, indices=indices)

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The CSR pointers of queries ``start:stop`` (not rebased) and the shared indices array."""
        return self.indptr[start : stop + 1], self.indices


def tile_columns(n_items: int, rows: int, tile_elements: int | None = None) -> int:
    """Items per score tile for ``rows`` queries: equal tiles of at most ``tile_elements / rows`` columns.

    Example
    -------
    >>> tile_columns(50_000, 256, 1 << 22), tile_columns(10_000, 256, 1 << 22), tile_columns(10_000, 1)
    (12500, 10000, 10000)
    """
    widest = max(1, (tile_elements or TILE_ELEMENTS) // max(1, rows))
    tiles = -(-n_items // widest)
    return max(1, -(-n_items // max(1, tiles)))


def topk_scores(
    query_vectors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    exclude: object = None,
    *,
    item_factors_t: np.ndarray | None = None,
    workspace: Workspace | None = None,
    tile_elements: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items by inner product for each query, excluded items removed, best first.

    Scores :data:`CHUNK_ROWS` queries at a time against tiles of :func:`tile_columns` items, so memory is bounded
    by one tile (``tile_elements`` float32 scores and as many bytes of mask), whatever the number of queries or
    items. Runs in the calling thread; numpy releases the GIL, so
    callers may run chunks in threads.

    Parameters
    ----------
    query_vectors
        float32 ``[q, f]`` (or ``[f]`` for one query).
    item_factors
        float32 ``[n_items, f]``.
    k
        Items wanted per query.
    exclude
        ``None``, a CSR matrix with one row per query, or a list (one per query) of item indices never to return.
    item_factors_t
        Optional C-contiguous ``item_factors.T``, when the caller scores many chunks against the same items.
    workspace
        Scratch buffers reused across calls from the same thread (one per thread: they are not shared safely).
    tile_elements
        Scores held at once (default :data:`TILE_ELEMENTS`): bounds the memory of a call.

    Returns
    -------
    (indices, scores)
        int32 and float32 ``[q, k]``; ``-1`` / ``-inf`` pad rows with fewer than ``k`` items left.

    Example
    -------
    >>> idx, _ = topk_scores(np.ones((1, 2), np.float32), np.array([[1, 0], [2, 2]], np.float32), 1)
    >>> idx.tolist()
    [[1]]
    """
    queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
    items = np.asarray(item_factors, dtype=np.float32)
    if items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"query_vectors have {queries.shape[1]} factors and item_factors shape {items.shape}; "
            "expected item_factors [n_items, same factors]"
        )
    n_items = items.shape[0]
    excl = Exclusions.of(exclude, len(queries), n_items)
    items_t = np.ascontiguousarray(items.T) if item_factors_t is None else item_factors_t
    work = workspace or Workspace()
    parts_i, parts_s = [], []
    for start in range(0, len(queries), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(queries))
        rows = queries[start:stop]
        top = RunningTopK(len(rows), n_items, k, work)
        width = tile_columns(n_items, len(rows), tile_elements)
        for first in range(0, n_items, width):
            tile = items_t[:, first : first + width]
            scores = np.matmul(rows, tile, out=work.array("scores", (len(rows), tile.shape[1]), np.float32))
            if excl is not None:
                indptr, indices = excl.rows(start, stop)
                mask_excluded(scores, indptr, indices, offset=first)
            top.add(scores, first)
        idx, val = top.result()
        parts_i.append(idx)
        parts_s.append(val)
    if not parts_i:
        return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
    if len(parts_i) == 1:
        return parts_i[0], parts_s[0]
    return np.concatenate(parts_i), np.concatenate(parts_s)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32: inner products become cosines.

    Example
    -------
    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
