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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank import block
from lambdarec.rank.block import NONE, best_rows, finite, seen_table
from lambdarec.rank.components import nearest_seed, reason
from lambdarec.rank.feedback import Demotions, demote
from lambdarec.rank.mmr import mmr_order
from lambdarec.rank.one import rank_one
from lambdarec.rank.pool import Ask, components, fresh_vector, pool_sources, prepare, trending_table
from lambdarec.rank.seeds import evidence, evidence_many
from lambdarec.rank.trending import TrendingScores
from lambdarec.rank.weights import MergeWeights

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

SOURCES = ("batch", "speed", "session", "trending", "popular")  # codes in lambdarec.rank.block's source table


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


class Ranked(msgspec.Struct, frozen=True, gc=False):
    """One recommended item (a struct the garbage collector need not track: a replay builds millions of them)."""

    item_id: str
    score: float
    source: str
    reason: str | None = None
    components: dict[str, float] = {}


__all__ = ["SOURCES", "MergeInput", "MergeWeights", "Ranked", "fresh_evidence", "fresh_vector", "merge", "merge_many"]


def merge(inp: MergeInput, weights: MergeWeights, k: int, offset: int = 0, explain: bool = False) -> list[Ranked]:
    """Rank items for one user or session; see the module docstring. Returns at most ``k`` items.

    The steps of :func:`merge_many`'s blocks on 1-D arrays (:mod:`lambdarec.rank.one`), without a block's row
    bookkeeping: serving and replay run the same steps, and a block gives each request this list.
    """
    if k <= 0 or not len(inp.model.item_ids):
        return []
    return _rank_one(Ask(inp, weights, k, offset, explain))


def merge_many(
    inputs: Sequence[MergeInput],
    weights: MergeWeights | Sequence[MergeWeights],
    k: int | Sequence[int],
    offset: int | Sequence[int] = 0,
    explain: bool | Sequence[bool] = False,
) -> list[list[Ranked]]:
    """:func:`merge` of many requests, each with its own weights, ``k``, ``offset`` and ``explain`` (a single value
    applies to all). The lists are those of one :func:`merge` per request; the work is done step by step for a
    block of requests against one snapshot (a replay ranks the variants of many events together).
    """
    n = len(inputs)
    each = zip(inputs, _each(weights, n), _each(k, n), _each(offset, n), _each(explain, n), strict=True)
    asks = [Ask(inp, w, kk, off, ex) for inp, w, kk, off, ex in each]
    out: list[list[Ranked]] = [[] for _ in range(n)]
    by_model: dict[int, list[int]] = {}
    for j, ask in enumerate(asks):
        if ask.k > 0 and len(ask.inp.model.item_ids):
            by_model.setdefault(id(ask.inp.model), []).append(j)
    for todo in by_model.values():
        size = block.block_size(len(asks[todo[0]].inp.model.item_ids))
        for at in range(0, len(todo), size):
            part = todo[at : at + size]
            if len(part) == 1:  # a block of one: no block bookkeeping
                out[part[0]] = _rank_one(asks[part[0]])
                continue
            for j, ranked in zip(part, _rank_block([asks[j] for j in part]), strict=True):
                out[j] = ranked
    return out


def _each(value, n: int) -> list:  # type: ignore[no-untyped-def]
    return list(value) if isinstance(value, Sequence) else [value] * n


def _rank_one(ask: Ask) -> list[Ranked]:
    """The merge of one request (``lambdarec.rank.one`` has its steps on 1-D arrays)."""
    picks, items, total, codes, parts, demoted = rank_one(ask)
    if not picks.size:
        return []
    return _answers(ask.inp.model, [ask], [picks], items, total, codes, parts, [(0, demoted) if demoted else None])[0]


def _rank_block(asks: list[Ask]) -> list[list[Ranked]]:
    """The merge of a block of requests against one snapshot (``lambdarec.rank.block`` has the array steps)."""
    model = asks[0].inp.model
    n_items = len(model.item_ids)
    seen = seen_table(n_items, [prepare(ask, order_trending=False) for ask in asks])
    trend = trending_table(asks)  # trending given as arrays: one table, its heads taken for the block at once
    for j, ask in enumerate(asks):
        if ask.inp.eligible is not None:  # ineligible: never picked
            seen[j] |= ~ask.inp.eligible
    found, scores, slot = pool_sources(model, asks, seen, trend)
    source = block.source_table(seen, found)
    need = np.array([a.offset + a.k for a in asks], dtype=np.int64)
    pooled = source != NONE
    block.fill_popular(source, pooled, seen, model.popular_order, need)
    rows, items = block.cells(pooled)
    codes = source.reshape(-1)[rows * n_items + items]
    parts = components(model, asks, rows, items, scores, slot, trend)
    on = [a for a in asks if a.weights.session != 0]  # the evidence of the others is never used
    found = iter(evidence_many(model, [a.inp.fresh for a in on], [a.inp.session for a in on],
                               [a.inp.now_s for a in on], [a.weights.session_half_life_s for a in on]))  # fmt: skip
    session_weight = [
        a.weights.session * (1.0 + a.weights.fresh_boost * float(next(found))) if a.weights.session != 0 else 0.0
        for a in asks
    ]
    w = np.array([(a.weights.cf, sw, a.weights.trending) for a, sw in zip(asks, session_weight, strict=True)],
                 dtype=np.float32).reshape(-1, 3)  # fmt: skip
    w = w[rows]  # float32 weights: the same sums as weight * component with a Python float weight
    total = finite(w[:, 0] * parts["cf"] + w[:, 1] * parts["session"] + w[:, 2] * parts["trending"])
    total, demoted = _demote(model, asks, rows, items, total)
    picks = best_rows(rows, items, total, model.popularity_all, need - np.array([a.k for a in asks]), need)
    for j, a in enumerate(asks):
        s, e = np.searchsorted(rows, [j, j + 1]) if a.weights.mmr_lambda > 0 else (0, 0)
        if e > s:
            it, tot = items[s:e], total[s:e]
            order = mmr_order(np.lexsort((it, -model.popularity_all[it], -tot)), tot, model.item_factors[it],
                              a.weights.mmr_lambda, int(need[j]))  # fmt: skip
            picks[j] = s + order[a.offset : int(need[j])]
    return _answers(model, asks, picks, items, total, codes, parts, demoted)


def _demote(
    model: SnapshotModel, asks: list[Ask], rows: np.ndarray, items: np.ndarray, total: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, Demotions] | None]]:
    """``total`` with each request's dislike and fatigue demotions (:func:`lambdarec.rank.feedback.demote`) applied
    to its segment, and per request its segment's first flat position and what was applied (None: nothing)."""
    demoted: list[tuple[int, Demotions] | None] = [None] * len(asks)
    for j, a in enumerate(asks):
        fresh = a.inp.fresh
        if fresh is None or not (fresh.disliked or fresh.shown):  # most requests: nothing to demote
            continue
        s, e = np.searchsorted(rows, [j, j + 1]).tolist()
        part, why = demote(model, fresh, items[s:e], total[s:e], a.weights.demote, now_s=a.inp.now_s)
        if why is not None:
            total[s:e] = part
            demoted[j] = (s, why)
    return total, demoted


def _answers(
    model: SnapshotModel,
    asks: list[Ask],
    picks: list[np.ndarray],
    items: np.ndarray,
    total: np.ndarray,
    codes: np.ndarray,
    parts: dict[str, np.ndarray],
    demoted: list[tuple[int, Demotions] | None],
) -> list[list[Ranked]]:
    """Each request's picked (flat) positions as its ranked items, explained where asked (with what demoted each
    item: ``demoted[b]`` is request ``b``'s first flat position and its demotions, None when none)."""
    picked = np.concatenate(picks) if len(picks) > 1 else picks[0]
    names = model.item_id_list
    ids, scores = [names[i] for i in items[picked].tolist()], total[picked].tolist()
    sources = [SOURCES[c] for c in codes[picked].tolist()]
    out, at = [], 0
    for a, mine in zip(asks, picks, strict=True):
        end = at + mine.size
        if not a.explain:
            out.append(list(map(Ranked, ids[at:end], scores[at:end], sources[at:end])))
        else:
            nearest = nearest_seed(model, items[mine], a.seeds).tolist()
            why = [reason(model, source, seed) for source, seed in zip(sources[at:end], nearest, strict=True)]
            comps = [{name: float(v[j]) for name, v in parts.items()} for j in mine.tolist()]
            if (d := demoted[len(out)]) is not None:
                start, why_demoted = d
                explained = [
                    why_demoted.explained(j - start, r, c) for j, r, c in zip(mine.tolist(), why, comps, strict=True)
                ]
                why, comps = [r for r, _ in explained], [c for _, c in explained]
            out.append(list(map(Ranked, ids[at:end], scores[at:end], sources[at:end], why, comps)))
        at = end
    return out


def fresh_evidence(inp: MergeInput, half_life_s: float) -> float:
    """How much recent fresh evidence the user has, in [0, 1): ``e / (1 + e)`` with ``e`` the recency-weighted
    count (halving every ``half_life_s``) of their events after the snapshot's cut-off and of the session's items.

    When a user's recent events disagree with the nightly list (a taste drift), the session component, which
    follows those events, then outweighs the batch score in proportion to how much and how recently they did.
    """
    return evidence(inp.model, inp.fresh, inp.session, inp.now_s, half_life_s)
