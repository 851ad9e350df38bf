"""The pool of one request in compiled loops (numba), for :mod:`lambdarec.rank.fused`: each item's first source,
and the selections it needs (the fresh vector's best unseen items; the list's best pooled items), as a
quickselect and a heapsort over positions compared by (value, tie-break): numba's own ``partition`` and sorts
cost seconds more to compile each.
"""

from __future__ import annotations

import numpy as np

from lambdarec.compiled import compiled

BATCH, SPEED, SESSION, TRENDING, POPULAR, NONE = 0, 1, 2, 3, 4, 5  # lambdarec.rank.block's source codes


@compiled
def _ahead(value_a, tie_a, value_b, tie_b):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Whether a ranks before b: a higher value, or an equal one (``-0.0`` as ``0.0``) and a lower tie-break."""
    return value_a > value_b or (value_a == value_b and tie_a < tie_b)


@compiled
def _select(order, values, ties, n):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Moves the ``n`` best of ``order`` (positions in ``values`` and ``ties``, which break every tie) to
    ``order[:n]``, in no order (quickselect, in place)."""
    lo, hi, k = 0, order.size - 1, n - 1
    while lo < hi:
        a, b, c = order[lo], order[(lo + hi) // 2], order[hi]
        if _ahead(values[b], ties[b], values[a], ties[a]):
            a, b = b, a
        if _ahead(values[c], ties[c], values[b], ties[b]):
            b = c if _ahead(values[a], ties[a], values[c], ties[c]) else a
        pivot, pivot_tie = values[b], ties[b]  # the median of the three
        i, j = lo, hi
        while i <= j:
            while _ahead(values[order[i]], ties[order[i]], pivot, pivot_tie):
                i += 1
            while _ahead(pivot, pivot_tie, values[order[j]], ties[order[j]]):
                j -= 1
            if i <= j:
                order[i], order[j] = order[j], order[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break


@compiled
def _sort(order, values, ties):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``order`` sorted best first, in place (heapsort: numba's own sorts take seconds more to compile)."""
    n = order.size
    for start in range(n // 2 - 1, -1, -1):
        _sift(order, values, ties, start, n)
    for end in range(n - 1, 0, -1):
        order[0], order[end] = order[end], order[0]
        _sift(order, values, ties, 0, end)


@compiled
def _sift(order, values, ties, root, end):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Sinks ``order[root]`` into the heap ``order[:end]`` whose root is its last-ranked item."""
    while 2 * root + 1 < end:
        child = 2 * root + 1
        a, b = order[child], order[child + 1] if child + 1 < end else order[child]
        if child + 1 < end and _ahead(values[a], ties[a], values[b], ties[b]):
            child += 1
        top, low = order[root], order[child]
        if not _ahead(values[top], ties[top], values[low], ties[low]):
            return
        order[root], order[child] = low, top
        root = child


@compiled
def _top_unseen(scores, seen, n, index):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The ``n`` best unseen items of ``scores`` (all finite), ties at the ``n``-th score to the lowest indices
    (``index``: each item's index, ``arange``)."""
    count = 0
    for i in range(seen.size):
        count += not seen[i]
    unseen = np.empty(count, dtype=np.int64)
    count = 0
    for i in range(seen.size):
        if not seen[i]:
            unseen[count] = i
            count += 1
    if n < unseen.size:
        _select(unseen, scores, index, n)
    return unseen[:n]


@compiled
def pool(n_items, had, eligible, trend_order, trending_top_n, seeds, neighbours, per_seed, scores, speed_top_n,
          candidates, popular_order, need, index):  # type: ignore[no-untyped-def]  # fmt: skip  # pragma: no cover
    """Each item's first source (``NONE``: not pooled): :func:`lambdarec.rank.one._sources` and the popular fill
    of ``rank_numpy``; a source's code is its precedence (the lowest wins). Plain loops throughout: numba compiles
    them in a fraction of the time its array functions take. An empty array when an index given is outside the
    catalogue (numba does not check them: the numpy steps then raise the IndexError)."""
    ruled = eligible.size > 0
    seen, source = np.empty(n_items, dtype=np.bool_), np.full(n_items, NONE, dtype=np.int8)
    for i in range(n_items):
        seen[i] = ruled and not eligible[i]
    if not (_within(had, n_items) and _within(seeds, n_items) and _within(candidates, n_items)):
        return source[:0]  # the trending order was checked once per refresh, the popular order is the snapshot's
    for i in had:
        seen[i] = True
    n_seen = np.count_nonzero(seen)
    _trending(source, seen, trend_order, trending_top_n)
    if not _neighbours(source, seen, seeds, neighbours, per_seed, ruled):
        return source[:0]
    speed_n = min(speed_top_n, n_items - n_seen)
    if scores.size and speed_n > 0:
        for i in _top_unseen(scores, seen, speed_n, index):
            source[i] = min(source[i], SPEED)
    for i in candidates:
        source[i] = BATCH
    pooled = 0
    for i in range(n_items):
        if seen[i]:
            source[i] = NONE
        pooled += source[i] != NONE
    if pooled < need:  # popular items fill the rest, after every other source
        for i in popular_order[: need + n_seen + pooled]:
            if source[i] == NONE and not seen[i]:
                source[i] = POPULAR
    return source


@compiled
def _trending(source, seen, order, top_n):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The first ``top_n`` unseen items of the trending ``order`` pooled."""
    taken = 0
    for i in order:
        if taken == top_n:
            return
        if not seen[i]:
            source[i] = TRENDING
            taken += 1


@compiled
def _within(indices, n_items):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Whether every index is in ``[0, n_items)``."""
    for i in indices:  # noqa: SIM110 - numba compiles no generator expression
        if i < 0 or i >= n_items:
            return False
    return True


@compiled
def _neighbours(source, seen, seeds, neighbours, per_seed, ruled):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Each seed's first ``per_seed`` neighbours pooled (-1: none); under rules (``ruled``), its first
    ``per_seed`` that are still allowed. False when a neighbour index is outside the catalogue."""
    for s in seeds:
        taken = 0
        for j in range(neighbours.shape[1]):
            if taken == per_seed or (not ruled and j == per_seed):
                break
            near = neighbours[s, j]
            if near >= source.size:
                return False
            if near >= 0 and not (ruled and seen[near]):
                source[near] = min(source[near], SESSION)
                taken += 1
    return True


@compiled
def picks(items, total, popular_rank, need, offset):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Positions in ``items`` of ranks ``offset`` to ``need - 1`` by score, then popularity, then index
    (``popular_rank``: each item's place in the snapshot's popularity order, that tie-break as one key)."""
    n = items.size
    ties = np.empty(n, dtype=np.int64)
    for j in range(n):
        ties[j] = popular_rank[items[j]]
    order = np.arange(n)
    if need < n:
        _select(order, total, ties, need)
    head = order[: min(need, n)]
    _sort(head, total, ties)
    return head[offset:]
