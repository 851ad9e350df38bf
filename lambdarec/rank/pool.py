"""The merge's per-request reads and its pool: what each source brings to each request of a block, and the score
components of the pooled items (see :mod:`lambdarec.rank.merge`; the array steps are :mod:`lambdarec.rank.block`).

Each pooled item is scored by

- **cf**: the fresh vector's dot product when the vector was solved against this snapshot, else the batch score
  (an item the batch did not score gets the request's lowest one); min-max normalised over the request's pool;
- **session**: recency-decayed mean cosine similarity to the session's and recent items;
- **trending**: the item's decayed trending count, normalised by the largest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import FreshUser
from lambdarec.rank import block
from lambdarec.rank.block import finite
from lambdarec.rank.deepen import seed_neighbours
from lambdarec.rank.memo import candidate_arrays, finite_row, finite_vector, item_indices
from lambdarec.rank.seeds import fresh_items, seeds_of
from lambdarec.rank.trending import TrendingScores

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model; merge calls this module
    from lambdarec.model.snapshot import SnapshotModel
    from lambdarec.rank.merge import MergeInput, MergeWeights


def fresh_vector(model: SnapshotModel, fresh: FreshUser | None) -> np.ndarray | None:
    """The fold-in vector if it was solved against this snapshot; a vector from another basis is not used, nor
    one holding NaN or inf (a defect, counted)."""
    if fresh is None or fresh.vector is None or fresh.basis != model.version:
        return None
    return finite_vector(fresh)


@dataclass
class Ask:
    """One request of a block, and what is read from it before the block's array steps."""

    inp: MergeInput
    weights: MergeWeights
    k: int
    offset: int
    explain: bool
    vector: np.ndarray | None = None
    seeds: dict[int, float] = field(default_factory=dict)  # item index -> recency weight
    seed_items: np.ndarray = field(default=None)  # type: ignore[assignment]  # the seeds' keys: set by prepare()


def prepare(ask: Ask, order_trending: bool = True) -> np.ndarray:
    """Read what the block's steps need from one request (trending ordered, batch scores checked, fresh vector,
    seeds); returns the indices of the items it has seen: batch history, fresh events the snapshot lacks, the
    session, ``exclude``. ``order_trending`` False leaves trending scores given as an array to the block, which
    takes the head of their order for all its requests at once (:func:`trending_table`)."""
    inp, model = ask.inp, ask.inp.model
    if order_trending and isinstance(inp.trending, np.ndarray):  # ordered once per request, not in each step
        inp = replace(inp, trending=TrendingScores.of(inp.trending))
    if inp.batch_row is not None and (row := finite_row(inp.batch_row)) is not inp.batch_row:
        inp = replace(inp, batch_row=row)
    ask.inp = inp
    ask.vector = fresh_vector(model, inp.fresh)
    ask.seeds = seeds_of(model, inp.session, inp.fresh, inp.now_s, ask.weights.session_half_life_s)
    ask.seed_items = np.fromiter(ask.seeds, dtype=np.int64, count=len(ask.seeds))
    parts = [ask.seed_items]
    if inp.batch_row is not None:
        parts.append(np.asarray(inp.batch_row.history, dtype=np.int64))
    if inp.exclude:
        parts.append(item_indices(model, inp.exclude, lambda: inp.exclude))
    if inp.fresh is not None:
        fresh = inp.fresh
        parts.append(item_indices(model, fresh, lambda: fresh_items(fresh, model)))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def trending_table(asks: list[Ask]) -> tuple[np.ndarray, np.ndarray]:
    """The trending scores of the requests that gave them as an array, as the rows of one ``[T, n_items]`` table
    (NaN, inf and negative values count 0 and are counted, as :meth:`TrendingScores.of` does per request), and
    each request's row in it (-1: none, or given already ordered)."""
    which = np.full(len(asks), -1, dtype=np.int64)
    raw = [j for j, a in enumerate(asks) if isinstance(a.inp.trending, np.ndarray)]
    if not raw:
        return np.empty((0, 0), dtype=np.float32), which
    which[raw] = np.arange(len(raw))
    table = np.stack([asks[j].inp.trending for j in raw]).astype(np.float32, copy=False)  # type: ignore[misc]
    return np.maximum(finite(table), 0, dtype=np.float32), which


def pool_sources(
    model: SnapshotModel, asks: list[Ask], seen: np.ndarray, trend: tuple[np.ndarray, np.ndarray]
) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """What each source brings to each request's pool, as (code, rows, items) in ``SOURCES`` order; the fresh
    vectors' scores of every item (one row per distinct vector) and each request's row in them (-1: none).
    ``trend``: :func:`trending_table`."""
    n = len(asks)
    slot = np.full(n, -1, dtype=np.int64)
    index: dict[int, int] = {}  # the variants of one event share their fresh vector: scored once
    vectors: list[np.ndarray] = []
    for j, a in enumerate(asks):
        if a.vector is not None:
            slot[j] = index.setdefault(id(a.vector), len(vectors))
            if slot[j] == len(vectors):
                vectors.append(a.vector)
    scores = (np.stack(vectors) @ model.item_factors.T if vectors
              else np.empty((0, seen.shape[1]), dtype=np.float32))  # fmt: skip
    with_row = [j for j, a in enumerate(asks) if a.inp.batch_row is not None]
    cands = [candidate_arrays(asks[j].inp.batch_row, seen.shape[1])[0] for j in with_row]  # type: ignore[arg-type]
    found = [(block.BATCH, np.repeat(np.asarray(with_row, dtype=np.int64), [c.size for c in cands]), _cat(cands))]
    speed_rows, speed_items = [], []
    for top_n in {a.weights.speed_top_n for a in asks}:
        rows = np.flatnonzero((slot >= 0) & np.array([a.weights.speed_top_n == top_n for a in asks]))
        r, items = block.top_unseen_shared(scores, slot, seen, rows, top_n)
        speed_rows.append(r)
        speed_items.append(items)
    found.append((block.SPEED, _cat(speed_rows), _cat(speed_items)))
    found.append((block.SESSION, *_neighbours(model, asks, seen)))
    found.append((block.TRENDING, *_trending_pool(asks, seen, trend)))
    return found, scores, slot


def _trending_pool(
    asks: list[Ask], seen: np.ndarray, trend: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items): each request's ``trending_top_n`` best unseen trending items; the rows of ``trend``'s table
    in one step per ``trending_top_n`` (:func:`lambdarec.rank.block.top_trending`), ordered ones one by one."""
    table, which = trend
    rows, items = [], []
    for j, a in enumerate(asks):
        trending = a.inp.trending
        if isinstance(trending, TrendingScores) and trending.order.size:
            order = trending.order
            items.append(order[~seen[j, order]][: a.weights.trending_top_n])
            rows.append(np.full(items[-1].size, j))
    raw = np.flatnonzero(which >= 0)
    for top_n in {asks[j].weights.trending_top_n for j in raw.tolist()}:
        mine = raw[np.array([asks[j].weights.trending_top_n == top_n for j in raw.tolist()])]
        r, top = block.top_trending(table[which[mine]], seen[mine], top_n)
        rows.append(mine[r])
        items.append(top)
    return _cat(rows), _cat(items)


def _neighbours(model: SnapshotModel, asks: list[Ask], seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, items): each request's seeds' first ``neighbours_per_seed`` neighbours; under the catalog's rules
    (``eligible``), their first ones still allowed (:func:`lambdarec.rank.deepen.seed_neighbours`)."""
    empty = np.empty(0, dtype=np.int64)
    seeds = [a.seed_items if a.inp.eligible is None else empty for a in asks]  # ruled ones: one by one, below
    counts = np.array([s.size for s in seeds], dtype=np.int64)
    rows, items = np.repeat(np.arange(len(asks)), counts), empty
    if rows.size:
        sizes = [a.weights.neighbours_per_seed for a in asks]
        near = model.neighbours[_cat(seeds), : max(sizes)]
        keep = near >= 0
        if min(sizes) != max(sizes):  # requests asking for fewer neighbours per seed than others
            keep &= np.arange(near.shape[1]) < np.repeat(sizes, counts)[:, None]
        rows, items = np.repeat(rows, near.shape[1]).reshape(near.shape)[keep], near[keep].astype(np.int64)
    ruled = [j for j, a in enumerate(asks) if a.inp.eligible is not None and a.seeds]
    if not ruled:
        return rows, items
    deep = [seed_neighbours(model.neighbours, asks[j].seed_items, asks[j].weights.neighbours_per_seed, seen[j])
            for j in ruled]  # fmt: skip
    ruled_rows = np.repeat(np.asarray(ruled, dtype=np.int64), [d.size for d in deep])
    return np.concatenate((rows, ruled_rows)), np.concatenate((items, _cat(deep)))


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, dtype=np.int64)


def components(
    model: SnapshotModel,
    asks: list[Ask],
    rows: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    slot: np.ndarray,
    trend: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """The ``cf``, ``session`` and ``trending`` components of every pooled (row, item), finite, ``cf`` min-max
    scaled per request.

    - **cf**: the fresh vector's score when the request has a usable one, else the batch score (an item the batch
      did not score gets the request's lowest one);
    - **session**: recency-weighted mean cosine similarity to the seeds (0 unless weighted or explained);
    - **trending**: the item's trending score over the largest (0 unless weighted or explained).
    """
    cf = _cf(model, asks, rows, items, scores, slot)
    return {
        "cf": block.minmax_rows(finite(cf), rows),
        "session": _session(model, asks, rows, items),
        "trending": _trending(asks, rows, items, trend),
    }


def _cf(
    model: SnapshotModel, asks: list[Ask], rows: np.ndarray, items: np.ndarray, scores: np.ndarray, slot: np.ndarray
) -> np.ndarray:
    """The ``cf`` component of a block of several requests, before scaling."""
    cf = np.empty(rows.size, dtype=np.float32)
    fresh = slot[rows] >= 0
    cf[fresh] = scores[slot[rows[fresh]], items[fresh]]
    if not fresh.all():
        batch = np.full(len(asks), -1, dtype=np.int64)
        tables = []
        for j, a in enumerate(asks):
            if slot[j] < 0 and a.inp.batch_row is not None:
                batch[j] = len(tables)
                tables.append(candidate_arrays(a.inp.batch_row, len(model.item_ids))[1])
        stale_rows, stale_items = rows[~fresh], items[~fresh]
        values = np.full(stale_rows.size, np.nan, dtype=np.float32)
        known = batch[stale_rows] >= 0
        if tables:
            values[known] = np.stack(tables)[batch[stale_rows[known]], stale_items[known]]
        cf[~fresh] = block.batch_cf(values, stale_rows, len(asks))
    return cf


def _session(model: SnapshotModel, asks: list[Ask], rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Each pooled item's cosine similarity to its request's seeds, weighted by their recency: the item's unit
    vector against the weighted mean of the seeds' (0 where not weighted nor explained, or without seeds)."""
    out = np.zeros(rows.size, dtype=np.float32)
    on = [j for j, a in enumerate(asks) if a.seeds and (a.explain or a.weights.session != 0)]
    if not on:
        return out
    unit = model.unit_factors
    mine = [asks[j] for j in on]
    counts = np.array([a.seed_items.size for a in mine])
    decay64 = np.fromiter((w for a in mine for w in a.seeds.values()), dtype=np.float64, count=int(counts.sum()))
    starts = np.cumsum(counts) - counts
    top = np.maximum.reduceat(decay64, starts)
    live = top.astype(np.float32) > 0  # seeds older than ~150 half-lives all decay to 0.0 in float32: no weight
    decay = (decay64 / np.where(live, top, 1.0).repeat(counts)).astype(np.float32)  # relative weights: see above
    total = np.add.reduceat(decay, starts)
    taste = np.add.reduceat(unit[_cat([a.seed_items for a in mine])] * decay[:, None], starts, axis=0)[live]
    taste /= total[live, None]
    which = np.full(len(asks), -1, dtype=np.int64)
    which[np.asarray(on)[live]] = np.arange(taste.shape[0])
    pooled = np.flatnonzero(which[rows] >= 0)
    if taste.shape[0] * unit.shape[0] <= pooled.size * unit.shape[1]:  # scoring every item is the smaller product
        out[pooled] = (taste @ unit.T)[which[rows[pooled]], items[pooled]]
    else:
        out[pooled] = np.einsum("ij,ij->i", unit[items[pooled]], taste[which[rows[pooled]]])
    return finite(out)


def _trending(
    asks: list[Ask], rows: np.ndarray, items: np.ndarray, trend_table: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Each pooled item's trending score over its request's largest one (0 where not weighted nor explained)."""
    out = np.zeros(rows.size, dtype=np.float32)
    table, in_table = trend_table
    wanted = np.array([a.explain or a.weights.trending != 0 for a in asks], dtype=bool)
    if table.size:  # the rows of trending_table: over each row's largest, where it has a positive one
        top = table.max(axis=1)
        on = (in_table >= 0) & wanted
        on[on] = top[in_table[on]] > 0
        pooled = np.flatnonzero(on[rows])
        t = in_table[rows[pooled]]
        out[pooled] = table[t, items[pooled]] / top[t]
    tables: dict[int, int] = {}
    which = np.full(len(asks), -1, dtype=np.int64)
    scores = []
    for j, a in enumerate(asks):
        trend = a.inp.trending
        if wanted[j] and isinstance(trend, TrendingScores) and trend.order.size:
            if id(trend) not in tables:
                tables[id(trend)] = len(scores)
                scores.append(trend.scores / trend.scores[trend.order[0]])
            which[j] = tables[id(trend)]
    if scores:
        pooled = which[rows] >= 0
        out[pooled] = np.stack(scores)[which[rows[pooled]], items[pooled]]
    return finite(out) if scores or table.size else out
