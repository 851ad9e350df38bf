"""The compiled loops (numba) of one request's merge, for :mod:`lambdarec.rank.fused`: the pool (each item's first
source), the selections it needs (the fresh vector's best unseen items; the list's best pooled items), the score
components, the totals and the picks. :func:`rank` runs them all.

Selections compare (value, tie-break) and avoid branches that go either way at random (a mispredicted branch
costs more than the comparison): the fresh vector's best unseen items by a radix select on the scores' bits, a
short list's places by insertion into a sorted head that most items fail to enter at its last place; a long list
by a quickselect and a heapsort over positions. numba's own ``partition`` and sorts cost seconds more to compile
each. Plain loops throughout, for the same reason.

All of them live in this one module: numba caches a kernel with the code of every kernel it calls, yet checks
only the kernel's own file for changes, so a kernel called from another module could run stale after an edit.
"""

from __future__ import annotations

import numpy as np

from lambdarec.compiled import compiled
from lambdarec.rank.block import BATCH, NONE, POPULAR, SESSION, SPEED, TRENDING  # the source codes

TAKEN, LEFT = 0, 1  # rank's status: ranked, or left to the numpy steps


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
    (``index``: each item's index, ``arange``; also the order the catalogue is read in), in index order.

    A radix select on the scores' bits, eight at a time, each pass over the items still level with the boundary:
    the loops count and compare without a data-dependent branch worth predicting (a quickselect's comparisons go
    either way at random, a mispredicted branch each), and the last pass keeps the boundary's lowest indices."""
    count = 0
    for i in range(seen.size):
        count += not seen[i]
    unseen, keys, bits = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64), scores.view(np.uint32)
    count = 0
    for i in range(seen.size):
        if not seen[i]:
            unseen[count], keys[count] = index[i], _key(bits[i])
            count += 1
    if n >= count:
        return unseen
    if n <= 0:
        return unseen[:0]
    left, wanted = count, n  # how many positions are level with the boundary so far, and how many of them to take
    positions = np.arange(count)
    prefix = 0
    hist = np.zeros(256, dtype=np.int64)
    for shift in (24, 16, 8, 0):
        hist[:] = 0
        for p in range(left):
            hist[(keys[positions[p]] >> shift) & 255] += 1
        above, digit = 0, 255
        while above + hist[digit] < wanted:
            above += hist[digit]
            digit -= 1
        wanted -= above  # taken from the boundary digit's items, the rest of the n being above it
        prefix |= digit << shift
        kept = 0
        for p in range(left):
            if (keys[positions[p]] >> shift) & 255 == digit:
                positions[kept] = positions[p]
                kept += 1
        left = kept
    top = np.empty(n, dtype=np.int64)
    taken = 0
    for p in range(count):  # index order: above the boundary key, then the boundary's lowest indices
        if keys[p] > prefix or (keys[p] == prefix and wanted > 0):
            wanted -= keys[p] == prefix
            top[taken] = unseen[p]
            taken += 1
    return top


@compiled
def _key(bits):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """A finite float32's ``bits`` as a key in the same order (32 bits, non-negative), ``-0.0`` as ``0.0``."""
    word = np.int64(bits)
    if word == 0x80000000:  # -0.0 ranks as 0.0
        word = 0
    return (0xFFFFFFFF - word) if word >> 31 else word | 0x80000000


@compiled
def _pool(n_items, had, eligible, trend_order, trending_top_n, seeds, neighbours, per_seed, scores, speed_top_n,
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


SHORT_LIST = 32  # up to this many places a list is picked by insertion into a sorted head
# a catalogue of up to this many items per batch candidate maps each item to its pool position (filling the map
# costs about a nanosecond an item; a binary search about 30 ns a candidate, mostly mispredicted branches)
DENSE_PER_CANDIDATE = 32


@compiled
def _picks(items, total, popular_rank, need, offset):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Positions in ``items`` of ranks ``offset`` to ``need - 1`` by score, then popularity, then index
    (``popular_rank``: each item's place in the snapshot's popularity order, that tie-break as one key). A short
    list (``need`` up to ``SHORT_LIST``) is kept sorted as the pool is read once: most items lose their one
    comparison to the head's last; a longer one is selected, then sorted."""
    n = items.size
    ties = np.empty(n, dtype=np.int64)
    for j in range(n):
        ties[j] = popular_rank[items[j]]
    if need <= SHORT_LIST:
        head = np.empty(max(min(need, n), 0), dtype=np.int64)
        size = 0
        if head.size == 0:
            return head
        for j in range(n):
            if size == head.size and not _ahead(total[j], ties[j], total[head[size - 1]], ties[head[size - 1]]):
                continue
            at = size if size < head.size else size - 1  # the last place is given up when the head is full
            while at > 0 and _ahead(total[j], ties[j], total[head[at - 1]], ties[head[at - 1]]):
                head[at] = head[at - 1]
                at -= 1
            head[at] = j
            size = min(size + 1, head.size)
        return head[offset:]
    order = np.arange(n)
    if need < n:
        _select(order, total, ties, need)
    head = order[: min(need, n)]
    _sort(head, total, ties)
    return head[offset:]


@compiled
def _unit(values, lo, hi):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``values`` min-max scaled in place, in float32 as ``lambdarec.rank.one._to_unit`` does (all ones when
    constant)."""
    if np.float64(hi) - np.float64(lo) < 1e-12:
        values[:] = np.float32(1.0)
        return values
    span = np.float32(np.float64(hi) - np.float64(lo))
    for j in range(values.size):
        values[j] = (values[j] - lo) / span
    return values


@compiled
def _cf(items, n_items, scores, candidates, batch_scores):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The pooled items' ``cf`` component: the fresh vector's scores (``scores``, when given) or the batch row's
    (an item the batch did not score gets the lowest known one; a repeated candidate keeps its first score),
    min-max scaled; all ones when neither scores an item."""
    n = items.size
    cf = np.full(n, np.nan, dtype=np.float32)
    if scores.size:
        for j in range(n):
            cf[j] = scores[items[j]]
    else:
        _batch_scores(cf, items, n_items, candidates, batch_scores)
    lo, hi, known = np.float32(np.inf), np.float32(-np.inf), False
    for j in range(n):
        if not np.isnan(cf[j]):  # only batch scores hold NaN (not proposed); the fresh scores are checked finite
            lo, hi, known = min(lo, cf[j]), max(hi, cf[j]), True
    if not known:
        cf[:] = np.float32(1.0)
        return cf
    for j in range(n):
        if np.isnan(cf[j]):
            cf[j] = lo
    return _unit(cf, lo, hi)


@compiled
def _batch_scores(cf, items, n_items, candidates, batch_scores):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Each pooled item's first batch score into ``cf`` (NaN left where the batch has none). A candidate finds its
    place in the pool (``items``, ascending) through a map of the catalogue's ``n_items`` where filling that map
    costs less than a binary search per candidate (whose steps go either way at random), else by the search."""
    mapped = n_items <= DENSE_PER_CANDIDATE * candidates.size
    where = np.full(n_items if mapped else 0, -1, dtype=np.int32)  # each item's position in the pool (-1: not pooled)
    if mapped:
        for j in range(items.size):
            where[items[j]] = j
    for c in range(candidates.size - 1, -1, -1):  # last to first: the first score of a candidate is left
        j = where[candidates[c]] if mapped else _position(items, candidates[c])
        if j >= 0:
            cf[j] = batch_scores[c]


@compiled
def _position(items, item):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``item``'s position in the ascending ``items``, -1 when absent (binary search)."""
    lo, hi = 0, items.size
    while lo < hi:
        mid = (lo + hi) // 2
        if items[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < items.size and items[lo] == item else -1


@compiled
def _session(items, seeds, decay, unit):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Each pooled item's cosine to the seeds' ``decay``-weighted mean unit vector (zeros without ``decay``)."""
    out = np.zeros(items.size, dtype=np.float32)
    if not decay.size:
        return out
    width = unit.shape[1]
    taste = np.zeros(width, dtype=np.float32)
    weight = np.float32(0.0)
    for s in range(seeds.size):
        weight += decay[s]
        for f in range(width):
            taste[f] += decay[s] * unit[seeds[s], f]
    for f in range(width):
        taste[f] /= weight
    for j in range(items.size):
        out[j] = _dot(unit[items[j]], taste)
    return out


@compiled(reassociate=True)
def _dot(a, b):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``a @ b`` in float32, its sum regrouped into vector lanes (one running sum's chain of dependent adds is
    several times slower)."""
    total = np.float32(0.0)
    for f in range(a.size):
        total += a[f] * b[f]
    return total


@compiled
def rank(n_items, had, eligible, trend_order, trending_top_n, share, seeds, decay, neighbours, per_seed, scores,
          speed_top_n, candidates, batch_scores, popular_order, popular_rank, unit, w_cf, w_session, w_trending, need,
          offset, order_it, index):  # type: ignore[no-untyped-def]  # fmt: skip  # pragma: no cover - compiled
    """The pool, components, totals and (``order_it``) the picks of one request: (status, items, source codes,
    [total, cf, session, trending] per item, picks); see :mod:`lambdarec.rank.fused` for the rules."""
    for v in scores:
        if not np.isfinite(v):
            return LEFT, had, had.astype(np.int8), np.zeros((4, 0), dtype=np.float32), had
    source = _pool(n_items, had, eligible, trend_order, trending_top_n, seeds, neighbours, per_seed, scores,
                   speed_top_n, candidates, popular_order, need, index)  # fmt: skip
    if source.size != n_items:  # an index outside the catalogue
        return LEFT, had, had.astype(np.int8), np.zeros((4, 0), dtype=np.float32), had
    n = 0
    for i in range(n_items):
        n += source[i] != NONE
    items, codes = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int8)
    n = 0
    for i in range(n_items):
        if source[i] != NONE:
            items[n], codes[n] = i, source[i]
            n += 1
    values = np.zeros((4, n), dtype=np.float32)  # total, cf, session, trending: one array to return, not four
    values[1], values[2] = _cf(items, n_items, scores, candidates, batch_scores), _session(items, seeds, decay, unit)
    total, cf, session, trend = values[0], values[1], values[2], values[3]
    for j in range(n):
        if share.size:
            trend[j] = share[items[j]]
        total[j] = w_cf * cf[j] + w_session * session[j] + w_trending * trend[j]
        if not (np.isfinite(cf[j]) and np.isfinite(session[j]) and np.isfinite(total[j])):
            return LEFT, items, codes, values, items
    chosen = items[:0]
    if order_it and n:
        chosen = _picks(items, total, popular_rank, need, offset)
    return TAKEN, items, codes, values, chosen
