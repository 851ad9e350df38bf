"""The merge of one request (every serving call; see :mod:`lambdarec.rank.merge`): the steps of a block
(:mod:`lambdarec.rank.pool`, :mod:`lambdarec.rank.block`) on 1-D arrays over the catalogue, without the block's
row bookkeeping (no ``[B, n_items]`` tables, no request of each pooled item, no per-request segments).

Example
-------
>>> picks, items, total, codes, parts, demoted = rank_one(Ask(inp, weights, 10, 0, False))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lambdarec.rank.block import BATCH, NONE, POPULAR, SESSION, SPEED, TRENDING, finite, minmax
from lambdarec.rank.deepen import seed_neighbours
from lambdarec.rank.feedback import Demotions, demote
from lambdarec.rank.memo import candidate_arrays
from lambdarec.rank.mmr import mmr_order
from lambdarec.rank.pool import Ask, prepare
from lambdarec.rank.seeds import evidence

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

Ranking = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], Demotions | None]


def rank_one(ask: Ask) -> Ranking:
    """One request's merge: the positions of its picked items in the pool (in rank order), the pooled items,
    their totals, first sources and components, and what demoted them (None: nothing)."""
    model, w = ask.inp.model, ask.weights
    n_items = len(model.item_ids)
    seen = np.zeros(n_items, dtype=bool)
    seen[prepare(ask)] = True
    inp = ask.inp  # prepared: trending ordered, batch scores checked
    if inp.eligible is not None:  # ineligible: never picked
        seen |= ~inp.eligible
    source = np.full(n_items, NONE, dtype=np.int8)  # written last source first: the first one's code is left
    trending = inp.trending  # TrendingScores or None: ordered in prepare()
    if trending is not None and trending.order.size:
        source[trending.order[~seen[trending.order]][: w.trending_top_n]] = TRENDING
    if ask.seeds:
        blocked = seen if inp.eligible is not None else None  # under rules: past the neighbours they remove
        source[seed_neighbours(model.neighbours, ask.seed_items, w.neighbours_per_seed, blocked)] = SESSION
    scores = model.item_factors @ ask.vector if ask.vector is not None else None
    if scores is not None:
        source[top_unseen(scores, seen, w.speed_top_n)] = SPEED
    if inp.batch_row is not None:
        source[candidate_arrays(inp.batch_row, n_items)[0]] = BATCH
    source[seen] = NONE
    items = np.flatnonzero(source != NONE)
    need = ask.offset + ask.k
    if items.size < need:  # popular items fill the rest, after every other source
        popular = model.popular_order[: need + int(np.count_nonzero(seen)) + items.size]
        source[popular[(source[popular] == NONE) & ~seen[popular]]] = POPULAR
        items = np.flatnonzero(source != NONE)
    if items.size == 0:  # every item seen or ineligible
        return items, items, np.empty(0, dtype=np.float32), source[items], {}, None
    parts = components_one(ask, items, scores)
    session_weight = w.session * (1.0 + w.fresh_boost * _evidence(ask)) if w.session != 0 else 0.0
    total = finite(w.cf * parts["cf"] + session_weight * parts["session"] + w.trending * parts["trending"])
    demoted = None
    if inp.fresh is not None and (inp.fresh.disliked or inp.fresh.shown):
        total, demoted = demote(model, inp.fresh, items, total, w.demote, now_s=inp.now_s)
    if w.mmr_lambda > 0:
        order = np.lexsort((items, -model.popularity_all[items], -total))
        order = mmr_order(order, total, model.item_factors[items], w.mmr_lambda, need)
    else:
        order = best_first(items, total, model.popularity_all, need)
    return order[ask.offset : need], items, total, source[items], parts, demoted


def _evidence(ask: Ask) -> float:
    inp = ask.inp
    return evidence(inp.model, inp.fresh, inp.session, inp.now_s, ask.weights.session_half_life_s)


def top_unseen(scores: np.ndarray, seen: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` highest-scoring unseen items (all of them when fewer), in no order."""
    n = min(n, scores.size - int(np.count_nonzero(seen)))
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    return np.argpartition(-np.where(seen, -np.inf, scores), n - 1)[:n]


def components_one(ask: Ask, items: np.ndarray, scores: np.ndarray | None) -> dict[str, np.ndarray]:
    """The ``cf``, ``session`` and ``trending`` components of the pooled ``items`` (see
    :func:`lambdarec.rank.pool.components`); ``scores``: the fresh vector's score of every item, or None."""
    inp, w = ask.inp, ask.weights
    model = inp.model
    if scores is not None:
        cf = scores[items]
    elif inp.batch_row is not None:
        values = candidate_arrays(inp.batch_row, len(model.item_ids))[1][items]
        known = ~np.isnan(values)  # an item the batch did not score: the lowest known score
        cf = np.where(known, values, values[known].min() if known.any() else np.float32(0.0)).astype(np.float32)
    else:
        cf = np.zeros(items.size, dtype=np.float32)  # nothing known: every item at the floor
    zeros = np.zeros(items.size, dtype=np.float32)
    return {
        "cf": minmax(finite(cf)),
        "session": session_one(model, ask, items) if ask.seeds and (ask.explain or w.session != 0) else zeros,
        "trending": trending_one(ask, items) if ask.explain or w.trending != 0 else zeros,
    }


def session_one(model: SnapshotModel, ask: Ask, items: np.ndarray) -> np.ndarray:
    """Each item's cosine similarity to the seeds, weighted by their recency relative to the newest."""
    decay64 = np.fromiter(ask.seeds.values(), dtype=np.float64, count=len(ask.seeds))
    top = decay64.max()
    if not np.float32(top) > 0:  # seeds older than ~150 half-lives all decay to 0.0 in float32: they weigh nothing
        return np.zeros(items.size, dtype=np.float32)
    decay = (decay64 / top).astype(np.float32)  # relative weights: float32 keeps their precision
    unit = model.unit_factors
    taste = decay @ unit[ask.seed_items] / decay.sum()  # the seeds' weighted mean: one product per item, as a block
    return finite(unit[items] @ taste)


def trending_one(ask: Ask, items: np.ndarray) -> np.ndarray:
    """Each item's trending score over the largest (0 without trending scores)."""
    trend = ask.inp.trending
    if trend is None or not trend.order.size:
        return np.zeros(items.size, dtype=np.float32)
    return finite(trend.scores[items] / trend.scores[trend.order[0]])


def best_first(items: np.ndarray, total: np.ndarray, popularity: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best pooled items in order (score, then popularity, then item index): only the items
    scoring at least the ``n``-th best score are sorted, which gives the head of the full order exactly."""
    head = np.arange(total.size)
    if total.size > n:
        head = np.flatnonzero(total >= np.partition(total, total.size - n)[total.size - n])
    return head[np.lexsort((items[head], -popularity[items[head]], -total[head]))]
