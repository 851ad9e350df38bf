"""The one merge + re-rank function that serving and replay both call.

Pool = the user's batch candidates, the top-N items for the fresh fold-in vector, neighbours of the session's
and recent items, trending items, and popular items as the last resort. Seen items (history, fresh events, the session,
``exclude``) and ineligible ones (``eligible``) are removed. Each pooled item is scored by a weighted sum of

- **cf**: the fresh vector's dot product when the vector was solved against this snapshot, else the batch score;
  min-max normalised over the pool, so weights mean the same whatever the model's score scale;
- **session**: recency-decayed mean cosine similarity to the session's and recent items;
- **trending**: the item's decayed trending count, normalised by the largest.

Ties break by popularity, then item index, so the same state always gives the same list and ``offset``
pages stably.

Example
-------
>>> ranked = merge(MergeInput(model, batch_row=row, fresh=state, now_s=t), weights, k=10)   # doctest: +SKIP
>>> ranked[0].source
'speed'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.freshstate import uncovered
from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank.components import nearest_seed, reason, score_components
from lambdarec.rank.deepen import seed_neighbours
from lambdarec.rank.defects import finite_batch_row, finite_or_zero
from lambdarec.rank.feedback import demote
from lambdarec.rank.memo import (
    candidate_arrays,
    finite_vector,
    item_indices,
    keep,
    last_answer,
    recent_seeds,
    speed_top,
)
from lambdarec.rank.mmr import mmr_order
from lambdarec.rank.trending import TrendingScores
from lambdarec.rank.weights import MergeWeights

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

SOURCES = ("batch", "speed", "session", "trending", "popular")
_NONE = len(SOURCES)  # in the pool's source table: no source brought the item


@dataclass(frozen=True)
class MergeInput:
    """Everything the merge needs about one request, already read from the store."""

    model: SnapshotModel
    batch_row: UserRow | None = None
    fresh: FreshUser | None = None
    session: Sequence[tuple[str, float]] = ()  # (item_id, event time s): the current session, oldest first
    exclude: frozenset[str] = frozenset()
    trending: TrendingScores | np.ndarray | None = None  # decayed counts per item; None when unknown
    now_s: float = 0.0
    eligible: np.ndarray | None = None  # bool per item: the catalog's rules and the request's filters; None: all


@dataclass(frozen=True)
class Ranked:
    """One recommended item."""

    item_id: str
    score: float
    source: str
    reason: str | None = None
    components: dict[str, float] = field(default_factory=dict)


def fresh_vector(model: SnapshotModel, fresh: FreshUser | None) -> np.ndarray | None:
    """The fold-in vector if it was solved against this snapshot; a vector from another basis is not used, nor
    one holding NaN or inf (a defect, counted)."""
    if fresh is None or fresh.vector is None or fresh.basis != model.version:
        return None
    return finite_vector(fresh)


def merge(inp: MergeInput, weights: MergeWeights, k: int, offset: int = 0, explain: bool = False) -> list[Ranked]:
    """Rank items for one user or session; see the module docstring. Returns at most ``k`` items."""
    model = inp.model
    n_items = len(model.item_ids)
    if k <= 0 or n_items == 0:
        return []
    if isinstance(inp.trending, np.ndarray):  # order the scores once per call, not in each step below
        inp = replace(inp, trending=TrendingScores.of(inp.trending))
    if inp.batch_row is not None and (row := finite_batch_row(inp.batch_row)) is not inp.batch_row:
        inp = replace(inp, batch_row=row)
    vector = fresh_vector(model, inp.fresh)
    seeds = _seeds(inp, model.item_index, weights.session_half_life_s)  # item index -> recency weight
    seen = _seen(inp, seeds)
    items, sources, batch_scores = _pool(inp, weights, vector, seeds, seen, need=offset + k)
    if items.size == 0:
        return []
    # a component with weight 0 adds exactly 0 to every total: it is computed only when asked to explain
    parts = score_components(
        model,
        inp.trending,  # TrendingScores or None: ordered on entry above
        items,
        vector=vector,
        batch_scores=batch_scores,
        seeds=seeds if explain or weights.session != 0 else {},
        trending=explain or weights.trending != 0,
        fresh=inp.fresh,
    )
    session_weight = (
        weights.session * (1.0 + weights.fresh_boost * fresh_evidence(inp, weights.session_half_life_s))
        if weights.session != 0
        else 0.0
    )
    total = weights.cf * parts["cf"] + session_weight * parts["session"] + weights.trending * parts["trending"]
    total, _ = finite_or_zero(total, "merge")  # the last guard: no NaN or inf ever reaches a response
    total, demoted = demote(model, inp.fresh, items, total, weights.demote, now_s=inp.now_s)
    # by score, then popularity, then item index: equal scores (a pool of popular fallbacks all normalise to 1)
    # keep popularity order, so offset pages never overlap
    if weights.mmr_lambda > 0:
        order = np.lexsort((items, -model.popularity_all[items], -total))
        order = mmr_order(order, total, model.item_factors[items], weights.mmr_lambda, offset + k)
    else:
        order = _best_first(items, total, model.popularity_all, offset + k)
    picked = order[offset : offset + k]
    nearest = nearest_seed(model, items[picked], seeds) if explain else None
    out = []
    ids, scores, codes = model.item_ids[items[picked]].tolist(), total[picked].tolist(), sources[picked].tolist()
    for rank, j in enumerate(picked.tolist()):
        source = SOURCES[codes[rank]]
        why = reason(model, source, nearest[rank] if nearest is not None else -1) if explain else None
        comps = {name: float(v[j]) for name, v in parts.items()} if explain else {}
        why, comps = demoted.explained(j, why, comps) if explain and demoted else (why, comps)
        out.append(Ranked(str(ids[rank]), float(scores[rank]), source, why, comps))
    return out


def _best_first(items: np.ndarray, total: np.ndarray, popularity: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best pooled items in order (score, then popularity, then item index): only the items
    scoring at least the ``n``-th best score are sorted, which gives the head of the full order exactly."""
    if total.size > n:
        head = np.flatnonzero(total >= np.partition(total, total.size - n)[total.size - n])
    else:
        head = np.arange(total.size)
    return head[np.lexsort((items[head], -popularity[items[head]], -total[head]))]


def fresh_evidence(inp: MergeInput, half_life_s: float) -> float:
    """How much recent fresh evidence the user has, in [0, 1): ``e / (1 + e)`` with ``e`` the recency-weighted
    count (halving every ``half_life_s``) of their events after the snapshot's cut-off and of the session's items.

    When a user's recent events disagree with the nightly list (a taste drift), the session component, which
    follows those events, then outweighs the batch score in proportion to how much and how recently they did.
    """
    if inp.fresh is None and not inp.session:
        return 0.0
    if not inp.now_s:
        return 0.0
    events = inp.fresh.events if inp.fresh is not None else []
    fresh_times = np.fromiter((event[1] for event in events), dtype=np.float64, count=len(events))
    times = np.concatenate(
        (fresh_times[fresh_times > inp.model.cutoff_s], np.fromiter((ts for _, ts in inp.session), dtype=np.float64))
    )
    if not times.size:
        return 0.0
    age = np.maximum(inp.now_s - times, 0.0)
    e = float(np.exp2(-age / half_life_s).sum())
    return e / (1.0 + e)


def _seen(inp: MergeInput, seeds: dict[int, float]) -> np.ndarray:
    """Items never to recommend: batch history, fresh events the snapshot lacks, the session, ``exclude``."""
    model = inp.model
    key = (model, inp.batch_row, inp.exclude, inp.fresh)
    found = last_answer("seen", key)
    if found is None:
        found = np.zeros(len(model.item_ids), dtype=bool)
        if inp.batch_row is not None:
            found[inp.batch_row.history] = True
        if inp.exclude:
            found[item_indices(model, inp.exclude, lambda: inp.exclude)] = True
        if inp.fresh is not None:
            found[item_indices(model, inp.fresh, lambda: _fresh_items(inp.fresh, model))] = True
        keep("seen", key, found)
    seen = found | ~inp.eligible if inp.eligible is not None else found.copy()  # ineligible: never picked
    seen[list(seeds)] = True
    return seen


def _pool(
    inp: MergeInput,
    sizes: MergeWeights,
    vector: np.ndarray | None,
    seeds: dict[int, float],
    seen: np.ndarray,
    need: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unseen candidate items (ascending), the index in SOURCES of the first source that brought each, and batch
    scores (NaN for items the batch did not propose). Vectorised: this runs on every request.

    A table over the catalogue holds each item's first source: the sources are written last to first, so the
    first one to bring an item is the one left in it.
    """
    model = inp.model
    found: list[tuple[int, np.ndarray]] = []
    if inp.batch_row is not None:
        candidates, scores_by_item = candidate_arrays(inp.batch_row, seen.size)
        found.append((0, candidates))
    if vector is not None:
        found.append((1, speed_top(model, inp.fresh, vector, sizes.speed_top_n, seen)))
    if seeds:
        blocked = seen if inp.eligible is not None else None  # under rules: past the neighbours they remove
        found.append(
            (2, seed_neighbours(model.neighbours, np.fromiter(seeds, np.int64), sizes.neighbours_per_seed, blocked))
        )
    trending = inp.trending  # TrendingScores or None: merge() ordered any array on entry
    if trending is not None and trending.order.size:
        order = trending.order
        found.append((3, order[~seen[order]][: sizes.trending_top_n]))
    source = np.full(seen.size, _NONE, dtype=np.int8)
    for code, part in reversed(found):
        source[part] = code
    source[seen] = _NONE
    items = np.flatnonzero(source != _NONE)
    if items.size < need:  # popular items fill the rest, after every other source
        popular = model.popular_order[: need + int(seen.sum()) + items.size]
        fill = popular[(source[popular] == _NONE) & ~seen[popular]]
        source[fill] = 4
        items = np.flatnonzero(source != _NONE)
    if inp.batch_row is None:
        return items, source[items], np.full(items.size, np.nan, dtype=np.float32)
    return items, source[items], scores_by_item[items]


def _fresh_items(fresh: FreshUser | None, model: SnapshotModel) -> list[str]:
    """Items the user touched that the snapshot lacks, their recent items (covered ones are history too), and the
    items they hid or disliked (lambdarec.rank.feedback): none of them is recommended."""
    if fresh is None:
        return []
    return (
        [item for item, _ts, _w in uncovered(fresh, model)[0]]
        + [item for item, _ts in fresh.recent]
        + [*fresh.hidden, *fresh.disliked]
    )


def _seeds(inp: MergeInput, index: dict[str, int], half_life_s: float) -> dict[int, float]:
    """Session and recent items with their recency weights (the newest weighs 1): each item once, with its largest
    weight, at its first place (session first). The recent items' part is kept for the state (never changed)."""
    seeds = _weighted(inp.session, index, inp.now_s, half_life_s)
    if inp.fresh is None:
        return seeds
    recent_items = inp.fresh.recent
    recent = recent_seeds(
        inp.model, inp.fresh, inp.now_s, half_life_s, lambda: _weighted(recent_items, index, inp.now_s, half_life_s)
    )
    if not seeds:
        return recent
    for i, weight in recent.items():
        if weight > seeds.get(i, -1.0):
            seeds[i] = weight
    return seeds


def _weighted(
    events: Sequence[tuple[str, float]], index: dict[str, int], now_s: float, half_life_s: float
) -> dict[int, float]:
    seeds: dict[int, float] = {}
    for item_id, ts in events:
        i = index.get(item_id)
        if i is None:
            continue
        weight = 0.5 ** ((now_s - ts if now_s > ts else 0.0) / half_life_s) if now_s else 1.0
        if weight > seeds.get(i, -1.0):  # the largest weight, at the item's first place
            seeds[i] = weight
    return seeds
