"""The merge of one request (every serving call; see :mod:`lambdarec.rank.merge`): the steps of a block
(:mod:`lambdarec.rank.pool`, :mod:`lambdarec.rank.block`) on 1-D arrays over the catalogue, without the block's
row bookkeeping (no ``[B, n_items]`` tables, no request of each pooled item, no per-request segments).

Serving pays this per list, so what depends only on the snapshot or a trending refresh is read from it, computed
once (``SnapshotModel.popular_rank``: the popularity-then-index tie-break as one key; ``TrendingScores.share``:
every item's trending component), and each step is a handful of numpy calls over the pool or the catalogue. The
same steps, fused into one compiled kernel (:mod:`lambdarec.rank.fused`), rank every request they can take.

Example
-------
>>> picks, items, total, codes, parts, demoted = rank_one(Ask(inp, weights, 10, 0, False))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lambdarec.rank.block import BATCH, NONE, POPULAR, SESSION, SPEED, TRENDING, finite, minmax
from lambdarec.rank.deepen import seed_neighbours
from lambdarec.rank.feedback import Demotions, demote
from lambdarec.rank.kernel import kernel
from lambdarec.rank.memo import candidate_arrays
from lambdarec.rank.mmr import mmr_order
from lambdarec.rank.pool import Ask, prepare
from lambdarec.rank.seeds import evidence

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

Ranking = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], Demotions | None]
_add, _min, _max = np.add.reduce, np.minimum.reduce, np.maximum.reduce
_fmin, _fmax = np.fmin.reduce, np.fmax.reduce
# the session component scores every item when the catalogue is at most this many times the pool (measured: a
# product over 1k items costs less than gathering 300 pooled rows; over 10k items ten times more)
FULL_PRODUCT_SHARE = 4


def rank_one(ask: Ask) -> Ranking:
    """One request's merge: the positions of its picked items in the pool (in rank order), the pooled items,
    their totals, first sources and components, and what demoted them (None: nothing). The array steps run fused
    in one compiled kernel (:mod:`lambdarec.rank.fused`); a request it leaves (a non-finite score or factor, an
    index outside the catalogue), or every request while the kernel is not loaded (:mod:`lambdarec.rank.kernel`),
    runs them as numpy steps (:func:`rank_numpy`)."""
    had = prepare(ask)
    rank_fused = kernel()
    if rank_fused is not None:
        ranked = _rank_fused(rank_fused, ask, had)
        if ranked is not None:
            return ranked
    return rank_numpy(ask, had)


def rank_numpy(ask: Ask, had: np.ndarray) -> Ranking:
    """:func:`rank_one` as numpy steps, after :func:`~lambdarec.rank.pool.prepare` gave ``had``."""
    model, w = ask.inp.model, ask.weights
    inp = ask.inp  # prepared: trending ordered, batch scores checked
    seen = ~inp.eligible if inp.eligible is not None else np.zeros(len(model.item_ids), dtype=bool)  # ineligible
    seen[had] = True
    n_seen = int(np.count_nonzero(seen))
    source, scores = _sources(ask, seen, n_seen)
    source[had if inp.eligible is None else seen] = NONE  # seen items are never pooled (by index: fewer to write)
    items = np.flatnonzero(source != NONE)
    need = ask.offset + ask.k
    if items.size < need:  # popular items fill the rest, after every other source
        popular = model.popular_order[: need + n_seen + items.size]
        source[popular[(source[popular] == NONE) & ~seen[popular]]] = POPULAR
        items = np.flatnonzero(source != NONE)
    if items.size == 0:  # every item seen or ineligible
        return items, items, np.empty(0, dtype=np.float32), source[items], {}, None
    parts = components_one(ask, items, scores)
    total = _finite(w.cf * parts["cf"] + _session_weight(ask) * parts["session"] + w.trending * parts["trending"])
    return _ordered(ask, items, total, source[items], parts, None)


def _ordered(
    ask: Ask, items: np.ndarray, total: np.ndarray, codes: np.ndarray, parts: dict[str, np.ndarray],
    picks: np.ndarray | None,
) -> Ranking:  # fmt: skip
    """The pool's demotions applied and its picks ordered (``picks``: already ordered, when nothing demotes)."""
    model, w, inp = ask.inp.model, ask.weights, ask.inp
    need = ask.offset + ask.k
    demoted = None
    if _demotes(ask):
        total, demoted = demote(model, inp.fresh, items, total, w.demote, now_s=inp.now_s)  # type: ignore[arg-type]
        picks = None
    if w.mmr_lambda > 0:
        order = np.lexsort((items, -model.popularity_all[items], -total))
        picks = mmr_order(order, total, model.item_factors[items], w.mmr_lambda, need)[ask.offset : need]
    elif picks is None:
        picks = best_first(items, total, model.popular_rank, need)[ask.offset : need]
    return picks, items, total, codes, parts, demoted


def _rank_fused(rank_fused: Callable[..., Any], ask: Ask, had: np.ndarray) -> Ranking | None:
    """:func:`rank_numpy`'s answer from the fused kernel, or None where it leaves the request to numpy."""
    inp, model, w = ask.inp, ask.inp.model, ask.weights
    trend = inp.trending  # TrendingScores or None: ordered in prepare()
    live = trend is not None and trend.order.size > 0
    share = trend.share if live and (ask.explain or w.trending != 0) else None  # type: ignore[union-attr]
    decay = _decay(ask) if ask.seeds and (ask.explain or w.session != 0) else None
    fused = rank_fused(
        model,
        had,
        inp.eligible,
        (trend.order if live else None, w.trending_top_n, share),  # type: ignore[union-attr]
        (ask.seed_items, decay, w.neighbours_per_seed),
        (model.item_factors @ ask.vector if ask.vector is not None else None, w.speed_top_n),
        inp.batch_row,
        (w.cf, _session_weight(ask), w.trending),
        ask.offset + ask.k,
        ask.offset,
        order_it=w.mmr_lambda <= 0 and not _demotes(ask),
    )
    if fused is None:
        return None
    items, total, codes, parts, picks = fused
    if items.size == 0:  # every item seen or ineligible
        return items, items, total, codes, {}, None
    return _ordered(ask, items, total, codes, parts, picks if w.mmr_lambda <= 0 else None)


def _demotes(ask: Ask) -> bool:
    """Whether the user's dislikes or impressions may demote pooled items (lambdarec.rank.feedback)."""
    fresh = ask.inp.fresh
    return fresh is not None and bool(fresh.disliked or fresh.shown)


def _session_weight(ask: Ask) -> float:
    """The session component's weight, grown by the request's recent fresh evidence (0 when not weighted)."""
    w = ask.weights
    return w.session * (1.0 + w.fresh_boost * _evidence(ask)) if w.session != 0 else 0.0


def _sources(ask: Ask, seen: np.ndarray, n_seen: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Each item's first source (``NONE``: not pooled; seen items still to be cleared), and the fresh vector's
    score of every item (None without a usable vector)."""
    inp, model, w = ask.inp, ask.inp.model, ask.weights
    source = np.full(len(model.item_ids), NONE, dtype=np.int8)  # written last source first: the first one's is left
    trending = inp.trending  # TrendingScores or None: ordered in prepare()
    if trending is not None and trending.order.size:
        # the first trending_top_n unseen items are among the first trending_top_n + n_seen: no pass over all
        order = trending.order[: w.trending_top_n + n_seen]
        source[order[~seen[order]][: w.trending_top_n]] = TRENDING
    if ask.seeds and inp.eligible is None and model.neighbours_full:  # every neighbour row full: no -1 to drop
        source[model.neighbours[ask.seed_items, : w.neighbours_per_seed]] = SESSION
    elif ask.seeds:
        blocked = seen if inp.eligible is not None else None  # under rules: past the neighbours they remove
        source[seed_neighbours(model.neighbours, ask.seed_items, w.neighbours_per_seed, blocked)] = SESSION
    scores = model.item_factors @ ask.vector if ask.vector is not None else None
    if scores is not None:
        source[top_unseen(scores, seen, w.speed_top_n, n_seen)] = SPEED
    if inp.batch_row is not None:
        source[candidate_arrays(inp.batch_row, len(model.item_ids))[0]] = BATCH
    return source, scores


def _finite(x: np.ndarray) -> np.ndarray:
    """:func:`~lambdarec.rank.block.finite` of a float array after one check: a finite sum means every value is
    finite (a sum that overflows is checked value by value, and only the non-finite ones are replaced)."""
    return x if math.isfinite(_add(x)) else finite(x)


def _scaled(x: np.ndarray) -> np.ndarray:
    """``minmax(finite(x))`` (:mod:`lambdarec.rank.block`) of a new, non-empty float32 array, scaled in place: its
    minimum and maximum are finite exactly when every value is (NaN and inf carry through both): the only check."""
    lo, hi = float(_min(x)), float(_max(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return minmax(finite(x))
    return np.ones(x.size, dtype=np.float32) if hi - lo < 1e-12 else _to_unit(x, lo, hi)


def _to_unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) / (hi - lo)`` as minmax computes it (float32, the Python floats cast to it), in place."""
    np.subtract(x, lo, out=x)
    return np.divide(x, hi - lo, out=x)


def _batch_cf(values: np.ndarray) -> np.ndarray:
    """The scaled ``cf`` of pooled items from their batch scores (NaN: not proposed by the batch; the rest finite,
    checked with the row): an unscored item gets the lowest known score, then minmax as :func:`_scaled`."""
    lo, hi = float(_fmin(values)), float(_fmax(values))  # NaN-ignoring: NaN only when no item is known
    if math.isnan(lo) or hi - lo < 1e-12:
        return np.ones(values.size, dtype=np.float32)  # all at one score (or all unknown: all at the floor)
    return _to_unit(np.fmax(values, np.float32(lo)), lo, hi)  # fmax: every known value is >= lo, NaN becomes lo


def _evidence(ask: Ask) -> float:
    inp = ask.inp
    if inp.fresh is None and inp.now_s and all(t >= inp.now_s for _, t in inp.session):
        return len(inp.session) / (1.0 + len(inp.session))  # each weighs exp2(-0.0) = 1: what evidence() sums
    return evidence(inp.model, inp.fresh, inp.session, inp.now_s, ask.weights.session_half_life_s)


def top_unseen(scores: np.ndarray, seen: np.ndarray, n: int, n_seen: int | None = None) -> np.ndarray:
    """The ``n`` highest-scoring unseen items (all of them when fewer), in no order; ``n_seen``: how many are
    seen, when already counted."""
    n = min(n, scores.size - (int(np.count_nonzero(seen)) if n_seen is None else n_seen))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    # negated, as the block's top_unseen does: a NaN score (a corrupt item vector) then sorts last, never first
    return np.argpartition(-np.where(seen, -np.inf, scores), n - 1)[:n]


def components_one(ask: Ask, items: np.ndarray, scores: np.ndarray | None) -> dict[str, np.ndarray]:
    """The ``cf``, ``session`` and ``trending`` components of the pooled ``items`` (see
    :func:`lambdarec.rank.pool.components`); ``scores``: the fresh vector's score of every item, or None."""
    inp, w = ask.inp, ask.weights
    model = inp.model
    if scores is not None:
        cf = _scaled(scores[items])
    elif inp.batch_row is not None:
        cf = _batch_cf(candidate_arrays(inp.batch_row, len(model.item_ids))[1][items])
    else:
        cf = np.ones(items.size, dtype=np.float32)  # nothing known: every item at the floor, scaled as constant
    zeros = np.zeros(items.size, dtype=np.float32)
    trend = inp.trending
    return {
        "cf": cf,
        "session": session_one(model, ask, items) if ask.seeds and (ask.explain or w.session != 0) else zeros,
        "trending": trend.share[items]
        if (ask.explain or w.trending != 0) and trend is not None and trend.order.size
        else zeros,
    }


def session_one(model: SnapshotModel, ask: Ask, items: np.ndarray) -> np.ndarray:
    """Each item's cosine similarity to the seeds, weighted by their recency relative to the newest."""
    decay = _decay(ask)
    if decay is None:
        return np.zeros(items.size, dtype=np.float32)
    unit = model.unit_factors
    taste = decay @ unit[ask.seed_items] / _add(decay)  # the seeds' weighted mean: one product per item, as a block
    if unit.shape[0] <= FULL_PRODUCT_SHARE * items.size:  # scoring every item costs less than gathering the pool's
        return _finite((unit @ taste)[items])
    return _finite(unit[items] @ taste)


def _decay(ask: Ask) -> np.ndarray | None:
    """The seeds' recency weights relative to the newest, as float32 (their precision kept); None when they all
    decayed to 0.0 in float32 (seeds older than ~150 half-lives weigh nothing)."""
    weights = list(ask.seeds.values())
    top = max(weights)
    if not np.float32(top) > 0:
        return None
    return np.array([x / top for x in weights], dtype=np.float32)


def best_first(items: np.ndarray, total: np.ndarray, popular_rank: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best pooled items in order (score, then popularity, then item index: ``popular_rank``,
    each item's place in the snapshot's popularity order, is that tie-break as one key): only the items scoring at
    least the ``n``-th best score are sorted, which gives the head of the full order exactly."""
    if total.size > n:
        head = np.flatnonzero(total >= np.partition(total, total.size - n)[total.size - n])
        return head[np.lexsort((popular_rank[items[head]], -total[head]))]
    return np.lexsort((popular_rank[items], -total))
