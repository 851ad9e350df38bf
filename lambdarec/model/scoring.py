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

import numpy as np

from lambdarec.model.exclusions import Exclusions, TileMask
from lambdarec.model.topk import RunningTopK, Workspace, mask_excluded
from lambdarec.model.topk_threshold import ThresholdGuess, ThresholdSelection

# Queries scored together. The sgemm repacks the item factors on every call, so a call must serve many queries:
# 256 rows made the whole top-K 10-20% faster than 64 at 50k items, 512 another 5% at 20k items on the guessed
# path (measured on a 2-core AVX-512 VM).
CHUNK_ROWS = 512
# Default score-tile elements (64 MiB of float32); ``batch.score_tile_mb`` sets it. Larger tiles mean fewer, wider
# tiles: less per-tile selection work and fewer sgemm calls; the memory is per scoring thread.
TILE_ELEMENTS = 1 << 24
# Score-tile elements on the guessed-threshold path (8 MiB of float32): the tile is compared and read again soon
# after the sgemm wrote it; narrower tiles cost more in per-tile calls than they save in cache misses.
HOT_TILE_ELEMENTS = 1 << 21


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
    guess: ThresholdGuess | None = None,
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
    guess
        A :class:`ThresholdGuess` for these items and ``k``, shared by the calls of a batch: once it has learnt
        from a first chunk, chunks select only the scores above a guessed threshold (same result, faster).

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
    queries, items_t, excl = _prepare(query_vectors, item_factors, exclude, item_factors_t)
    idx, val, short = guessed_topk_scores(
        queries, items_t, k, excl, workspace=workspace, tile_elements=tile_elements, guess=guess
    )
    redo_short(
        short, queries, items_t, k, excl, idx, val, workspace=workspace, tile_elements=tile_elements, guess=guess
    )
    return idx, val


def redo_short(
    short: np.ndarray,
    queries: np.ndarray,
    items_t: np.ndarray,
    k: int,
    excl: Exclusions | None,
    idx: np.ndarray,
    val: np.ndarray,
    *,
    workspace: Workspace | None = None,
    tile_elements: int | None = None,
    guess: ThresholdGuess | None = None,
) -> int:
    """Rows ``short`` of ``idx``/``val`` (those a guess was too high for) selected again, in place, all of them
    together: first behind ``guess``'s lower second guess (:attr:`ThresholdGuess.z_floor`), then the rows still
    short over their full rows; ``guess`` learns from their K-th scores. Returns how many went over full rows."""
    if not short.any():
        return 0
    again = np.flatnonzero(short)
    redo = None if excl is None else excl.take(again)
    if guess is not None and guess.z_floor is not None:  # a few hundred survivors each: cheaper than full rows
        idx[again], val[again], still = guessed_topk_scores(
            queries[again], items_t, k, redo, workspace=workspace, tile_elements=tile_elements, guess=guess,
            z=guess.z_floor,
        )  # fmt: skip
        if not still.any():
            return 0
        again, redo = again[still], None if redo is None else redo.take(np.flatnonzero(still))
    idx[again], val[again], _ = guessed_topk_scores(
        queries[again], items_t, k, redo, workspace=workspace, tile_elements=tile_elements
    )
    if guess is not None:
        guess.learn(queries[again], val[again, k - 1])
    return len(again)


def guessed_topk_scores(
    queries: np.ndarray,
    items_t: np.ndarray,
    k: int,
    excl: Exclusions | None,
    *,
    workspace: Workspace | None = None,
    tile_elements: int | None = None,
    guess: ThresholdGuess | None = None,
    z: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`topk_scores` that leaves the rows a guess was too high for unfilled, for the caller to redo together.

    Parameters
    ----------
    queries, items_t
        float32 ``[q, f]`` queries and C-contiguous ``[f, n_items]`` item factors (transposed).
    k, excl, workspace, tile_elements, guess
        As for :func:`topk_scores`; ``excl`` already an :class:`Exclusions` with one row per query.
    z
        The guess's multiplier, when not its learnt one (:meth:`ThresholdGuess.thresholds`).

    Returns
    -------
    (indices, scores, short)
        As :func:`topk_scores`, plus bool ``[q]``: rows whose entries are not filled (fewer than ``k`` scores
        above their guessed threshold). Without a ready ``guess`` no row is short.

    Example
    -------
    >>> items_t = np.ascontiguousarray(np.eye(3, dtype=np.float32).T)
    >>> idx, _, short = guessed_topk_scores(np.eye(3, dtype=np.float32)[:1], items_t, 1, None)
    >>> idx.tolist(), short.tolist()
    ([[0]], [False])
    """
    work = workspace or Workspace()
    if guess is not None and guess.k != k:
        raise ValueError(f"guess was made for k={guess.k}; this call asks k={k}")
    n_items = items_t.shape[1]
    out_i = np.empty((len(queries), k), dtype=np.int32)
    out_s = np.empty((len(queries), k), dtype=np.float32)
    short = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(queries))
        rows = queries[start:stop]
        chunk = None if excl is None else Exclusions(*excl.rows(start, stop))
        if guess is not None and guess.ready and ThresholdSelection.fits(len(rows), n_items):
            idx, val, short[start:stop] = _by_threshold(rows, items_t, k, chunk, work, tile_elements, guess, z)
        else:
            idx, val = _by_running_topk(rows, items_t, k, chunk, work, tile_elements)
            if guess is not None:  # learn only from full results: a short row's K-th score is unknown here
                guess.learn(rows, val[:, k - 1])
        out_i[start:stop], out_s[start:stop] = idx, val
    return out_i, out_s, short


def _prepare(
    query_vectors: np.ndarray, item_factors: np.ndarray, exclude: object, item_factors_t: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, Exclusions | None]:
    queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
    items = np.asarray(item_factors, dtype=np.float32)
    if items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"query_vectors have {queries.shape[1]} factors and item_factors shape {items.shape}; "
            "expected item_factors [n_items, same factors]"
        )
    excl = Exclusions.of(exclude, len(queries), items.shape[0])
    items_t = np.ascontiguousarray(items.T) if item_factors_t is None else item_factors_t
    return queries, items_t, excl


def _by_running_topk(
    rows: np.ndarray, items_t: np.ndarray, k: int, excl: Exclusions | None, work: Workspace, tile_elements: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """One chunk's top-k by :class:`RunningTopK`: any input, no learnt state."""
    n_items = items_t.shape[1]
    top = RunningTopK(len(rows), n_items, k, work)
    width = tile_columns(n_items, len(rows), tile_elements)
    for first in range(0, n_items, width):
        tile = items_t[:, first : first + width]
        scores = np.matmul(rows, tile, out=work.array("scores", (len(rows), tile.shape[1]), np.float32))
        if excl is not None:
            mask_excluded(scores, excl.indptr, excl.indices, offset=first)
        top.add(scores, first)
    return top.result()


def _by_threshold(
    rows: np.ndarray,
    items_t: np.ndarray,
    k: int,
    excl: Exclusions | None,
    work: Workspace,
    tile_elements: int | None,
    guess: ThresholdGuess,
    z: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's top-k by a guessed threshold (multiplier ``z``, else the learnt one); learns from its full rows,
    reports the short ones."""
    n_items = items_t.shape[1]
    if guess.shifted_items_t.shape != (items_t.shape[0] + 1, n_items):
        raise ValueError(f"guess was made for items of shape {guess.shifted_items_t.shape[::-1]} (with a bias)")
    moments = guess.moments(rows)
    thresholds = guess.thresholds(rows, moments, z)
    select = ThresholdSelection(thresholds, n_items, k, work, shifted=True)
    shifted = guess.shifted_queries(rows, thresholds)  # scores come out minus their row's threshold
    mask = None if excl is None else TileMask(excl.indptr, excl.indices)
    width = tile_columns(n_items, len(rows), min(HOT_TILE_ELEMENTS, tile_elements or TILE_ELEMENTS))
    for first in range(0, n_items, width):
        tile = guess.shifted_items_t[:, first : first + width]
        scores = np.matmul(shifted, tile, out=work.array("hot_scores", (len(rows), tile.shape[1]), np.float32))
        if mask is not None:
            mask.apply(scores, first)
        select.add(scores, first)
    idx, val, short = select.result()
    guess.learn(rows, np.where(short, np.nan, val[:, k - 1]), moments)  # short rows: learnt once redone
    return idx, val, short


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
