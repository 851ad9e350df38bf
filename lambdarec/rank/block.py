"""The merge's array steps for a block of requests against one snapshot: one table per step for the whole block
instead of a few dozen small arrays per request (see :func:`lambdarec.rank.merge.merge_many`).

A block of ``B`` requests keeps a ``[B, n_items]`` seen mask and a ``[B, n_items]`` first-source table; the pooled
items are then kept flat, ordered by request and item, with ``rows`` naming each one's request, so per-request
values are gathered with ``rows`` and per-request reductions are ``ufunc.reduceat`` over the segments.

Example
-------
>>> seen = seen_table(4, [np.array([0]), np.array([], np.int64)])
>>> seen.tolist()
[[True, False, False, False], [False, False, False, False]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lambdarec.rank.defects import finite_or_zero

BATCH, SPEED, SESSION, TRENDING, POPULAR = range(5)  # index in lambdarec.rank.merge.SOURCES
NONE = 5  # in the first-source table: no source brought the item
# A block's tables hold at most this many (request, item) cells (``[B, n_items]`` bool, int8 and float32 each):
# a replay's many requests are cut into blocks whose tables (about 8 bytes a cell in all) stay within a core's L2
# cache, so memory stays bounded and its steps do not wait on main memory (MovieLens-100K's replay: blocks of 155
# requests took 7-16% less CPU than one block of a flush's 768, measured alternating on the same requests).
MAX_BLOCK_CELLS = 262_144
MIN_BLOCK_REQUESTS = 16


def block_size(n_items: int) -> int:
    """How many requests one block holds for a catalogue of ``n_items``: its tables within ``MAX_BLOCK_CELLS``
    (a core's L2), but at least ``MIN_BLOCK_REQUESTS`` (a large catalogue still shares its per-block costs)."""
    return max(MIN_BLOCK_REQUESTS, MAX_BLOCK_CELLS // max(n_items, 1))


def seen_table(n_items: int, parts: Sequence[np.ndarray]) -> np.ndarray:
    """``[B, n_items]``: True where request ``b`` must not get the item; ``parts[b]`` the indices it has seen."""
    seen = np.zeros((len(parts), n_items), dtype=bool)
    rows = np.repeat(np.arange(len(parts)) * n_items, [p.size for p in parts])
    columns = np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)
    # flat positions would carry a bad index into a neighbour's row: refuse it, as a 2-D index does
    if columns.size and (columns.min() < 0 or columns.max() >= n_items):
        raise IndexError(f"a seen item index outside [0, {n_items}): {columns.min()}..{columns.max()}")
    seen.reshape(-1)[rows + columns] = True  # flat: no 2-D index walk
    return seen


def cells(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-D ``mask``: (rows, columns) of its True cells in row-major order, from the flat
    positions (about three times faster than numpy's 2-D walk on a block's ``[B, n_items]`` tables)."""
    flat = np.flatnonzero(mask)
    rows = flat // mask.shape[1]
    return rows, flat - rows * mask.shape[1]


def top_unseen(scores: np.ndarray, seen: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of each row's ``n`` highest-scoring unseen items (all of them when fewer), in no order.

    ``scores`` and ``seen`` are ``[R, n_items]``; the rows are those of ``scores``.
    """
    n = min(n, scores.shape[1])
    if n <= 0 or scores.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    lowest = np.where(seen, np.inf, np.negative(scores))  # negated: argpartition takes the lowest; seen last
    top = np.argpartition(lowest, n - 1, axis=1)[:, :n]
    rows = np.repeat(np.arange(scores.shape[0]), n)
    # a row with fewer than n unseen items brought seen ones too (a NaN score, last, is dropped as well)
    keep = (np.take_along_axis(lowest, top, axis=1) < np.inf).reshape(-1)
    return rows[keep], top.reshape(-1)[keep]


def top_unseen_shared(
    scores: np.ndarray, slot: np.ndarray, seen: np.ndarray, rows: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_unseen` of the requests ``rows`` (request ``b`` scores with ``scores[slot[b]]``): (request, item)
    of each one's ``n`` best unseen items. Neighbours in ``rows`` with the same vector and the same seen row (the
    variants of one replayed event) share one selection."""
    lead = np.ones(rows.size, dtype=bool)
    if rows.size > 1:
        before, after = rows[:-1], rows[1:]
        pair = np.flatnonzero(slot[before] == slot[after])  # only neighbours with one vector compare seen rows
        lead[1:] = True
        lead[1 + pair] = (seen[before[pair]] != seen[after[pair]]).any(axis=1)
    r, items = top_unseen(scores[slot[rows[lead]]], seen[rows[lead]], n)
    if lead.all():
        return rows[r], items
    owner = np.cumsum(lead) - 1  # the selection each request shares: a position in rows[lead]
    counts = np.bincount(r, minlength=int(lead.sum()))
    per = counts[owner]
    offset = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    return np.repeat(rows, per), items[np.repeat((np.cumsum(counts) - counts)[owner], per) + offset]


def top_trending(scores: np.ndarray, seen: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of each row's ``n`` best unseen items with a positive score, best first (ties by index): the
    head of :class:`lambdarec.rank.trending.TrendingScores`'s order, for a block of rows at once and without a
    full sort per row. ``scores`` (finite, non-negative float32) and ``seen`` are ``[R, n_items]``."""
    n = min(n, scores.shape[1])
    if n <= 0 or scores.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    live = np.where(seen, np.float32(0), scores)  # an item counts when unseen and positive
    # each row's n-th best score: every live item at or above it, ties at it included, then sorted
    floor = -np.partition(-live, n - 1, axis=1)[:, n - 1]
    rows, items = cells((live >= floor[:, None]) & (live > 0))
    order = np.lexsort((items, -live[rows, items], rows))
    rows, items = rows[order], items[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = np.arange(rows.size) - starts < n  # ties at the n-th score: the lowest indices
    return rows[keep], items[keep]


def source_table(seen: np.ndarray, found: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[B, n_items]`` int8: the first source (in ``found``'s order) of each (request, item), ``NONE`` where no
    source brought it or it is seen. ``found`` holds (source code, rows, items)."""
    source = np.full(seen.shape, NONE, dtype=np.int8)
    flat, width = source.reshape(-1), seen.shape[1]
    for code, rows, items in reversed(found):  # written last to first: the first source's code is the one left
        flat[rows * width + items] = code
    # NONE where seen: NONE is the largest code, so the larger of the two (no boolean-mask write)
    return np.maximum(source, seen.view(np.int8) * np.int8(NONE), out=source)


def fill_popular(
    source: np.ndarray, pooled: np.ndarray, seen: np.ndarray, popular_order: np.ndarray, need: np.ndarray
) -> None:
    """Popular items fill each request's pool that holds fewer than ``need[b]`` items, after every other source:
    every unpooled unseen item among the ``need + seen + pooled`` most popular ones (``pooled``: ``source != NONE``,
    updated too)."""
    count = np.count_nonzero(pooled, axis=1)
    short = np.flatnonzero(count < need)
    if short.size == 0:
        return
    length = need[short] + seen[short].sum(axis=1) + count[short]
    head = popular_order[: int(length.max())]
    free = (source[short][:, head] == NONE) & ~seen[short][:, head] & (np.arange(head.size) < length[:, None])
    r, c = cells(free)
    source[short[r], head[c]] = POPULAR
    pooled[short[r], head[c]] = True


def segments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The requests present in ``rows`` (sorted) and where each one's segment starts."""
    if rows.size == 0:
        return rows, rows
    starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    return rows[starts], starts


def batch_cf(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Batch scores as the ``cf`` component: an item the batch did not score (NaN) gets its request's lowest
    known score, or 0 when it knows none."""
    present, starts = segments(rows)
    floor = np.zeros(n_rows, dtype=np.float32)
    if present.size:
        with np.errstate(invalid="ignore"):
            low = np.fmin.reduceat(values, starts)
        floor[present] = np.where(np.isnan(low), 0.0, low)
    return np.where(np.isnan(values), floor[rows], values).astype(np.float32)


def minmax_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1] within each request's segment; all ones where a segment is constant."""
    if rows.size and rows[0] == rows[-1]:  # one request: one segment
        return minmax(x)
    present, starts = segments(rows)
    if not present.size:
        return x.astype(np.float32)
    lo, hi = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    span = hi.astype(np.float64) - lo.astype(np.float64)
    flat = np.zeros(int(present.max()) + 1, dtype=bool)
    flat[present] = span < 1e-12
    spans = np.ones(flat.size, dtype=np.float32)
    spans[present] = np.where(span < 1e-12, 1.0, span)
    lows = np.zeros(flat.size, dtype=np.float32)
    lows[present] = lo
    return np.where(flat[rows], np.float32(1.0), (x - lows[rows]) / spans[rows]).astype(np.float32)


def minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1]; all ones when it is constant."""
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x, dtype=np.float32) if hi - lo < 1e-12 else ((x - lo) / (hi - lo)).astype(np.float32)


def best_rows(
    rows: np.ndarray, items: np.ndarray, total: np.ndarray, popularity: np.ndarray, first: np.ndarray, n: np.ndarray
) -> list[np.ndarray]:
    """Per request ``b``, the flat positions of its ranks ``first[b]`` to ``n[b] - 1`` in the order score, then
    popularity, then item index: equal scores (a pool of popular fallbacks all normalise to 1) keep popularity
    order, so offset pages never overlap.

    Only the items scoring at least a request's ``n``-th best score are sorted: the head of the full order.
    """
    n_rows = n.size
    present, starts = segments(rows)
    counts = np.diff(np.append(starts, rows.size))
    threshold = np.full(n_rows, -np.inf, dtype=np.float32)
    if present.size:
        width = int(counts.max())
        padded = np.full((present.size, width), np.inf, dtype=np.float32)  # -total: the best first, padding last
        position = np.arange(rows.size) - np.repeat(starts, counts)
        padded.reshape(-1)[np.repeat(np.arange(present.size) * width, counts) + position] = -total
        want = n[present]
        cut = want < counts  # a request with no more items than it wants keeps them all
        if cut.any():
            part = np.partition(padded[cut], np.unique(want[cut] - 1), axis=1)
            threshold[present[cut]] = -part[np.arange(int(cut.sum())), want[cut] - 1]
    head = np.flatnonzero(total >= threshold[rows])
    order = head[np.lexsort((items[head], -popularity[items[head]], -total[head], rows[head]))]
    present_head, starts_head = segments(rows[order])
    ends = np.append(starts_head[1:], order.size)
    out = [np.empty(0, dtype=np.int64)] * n_rows
    for b, s, e in zip(present_head.tolist(), starts_head.tolist(), ends.tolist(), strict=True):
        out[b] = order[s + int(first[b]) : min(e, s + int(n[b]))]
    return out


def finite(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN and inf made 0 (counted as merge defects)."""
    return finite_or_zero(x, "merge")[0]
