"""What each replay variant asks of the state, and how it gets its list: through the one merge, as serving does.

=================  =======================================================================================
variant            what it uses
=================  =======================================================================================
``popular``        the snapshot's all-time popularity (a floor)
``batch``          the snapshot only: the user's precomputed candidates, no fresh state, no session
``batch+speed``    plus the speed layer's fresh state: fold-in vector and fresh seen items; no session weight
``lambda``         plus the session re-rank and trending, with the ``serving`` weights (or overrides)
=================  =======================================================================================

``batch``, ``batch+speed`` and ``lambda`` go through serving's request path,
:func:`serving_layer.recommend.recommend`, and so through the one merge (:func:`lambdarec.rank.merge.merge`);
``popular`` is the reference floor and ranks by popularity directly.

**Fair filtering.** Every variant removes the same seen set: the user's training history (the snapshot row) plus
every item the user touched before the scored event (``exclude``, which the replay keeps per user). A variant that
ignores the fresh state still knows what the user has consumed, as a product service passing ``exclude`` would.

Example
-------
>>> [v.name for v in standard_variants(MergeWeights())]
['popular', 'batch', 'batch+speed', 'lambda']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, pairwise, repeat
from operator import itemgetter
from typing import Any, Literal

import numpy as np

from lambdarec.model.rows import UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.block import cells, seen_table
from lambdarec.rank.memo import item_indices
from lambdarec.rank.merge import MergeWeights
from lambdarec.rank.trending import TrendingScores
from lambdarec.store import FreshUser, UserRow
from serving_layer.recommend import RankRequest, RecommendQuery, rank_many

Kind = Literal["popular", "batch", "batch+speed", "lambda"]
KINDS: tuple[Kind, ...] = ("popular", "batch", "batch+speed", "lambda")
_item = itemgetter(0)  # a fresh event's or recent entry's item id


@dataclass(frozen=True)
class Variant:
    """One way of recommending, scored on the same events as the others.

    ``fold_in``, ``session`` and ``trending`` switch parts of the state off for ablations; they matter only
    to the kinds that use them.
    """

    name: str
    kind: Kind
    weights: MergeWeights = field(default_factory=MergeWeights)
    fold_in: bool = True
    session: bool = True
    trending: bool = True

    def describe(self) -> dict[str, object]:
        """Plain data for the report."""
        w = self.weights
        return {
            "kind": self.kind,
            "weights": {
                "weight_cf": w.cf,
                "weight_session": w.session,
                "weight_trending": w.trending,
                "session_half_life_s": w.session_half_life_s,
                "mmr_lambda": w.mmr_lambda,
                "fresh_boost": w.fresh_boost,
            },
            "fold_in": self.fold_in,
            "session": self.session,
            "trending": self.trending,
        }


def make_variant(
    kind: Kind, weights: MergeWeights, *, fold_in: bool = True, session: bool = True, trending: bool = True
) -> Variant:
    """The variant ``kind`` with the parts it does not use switched off and their weights zeroed."""
    if kind not in KINDS:
        raise ValueError(f"unknown variant {kind!r}; expected one of {', '.join(KINDS)}")
    if kind in ("popular", "batch"):
        return Variant(kind, kind, replace(weights, session=0.0, trending=0.0), False, False, False)
    if kind == "batch+speed":
        return Variant(kind, kind, replace(weights, session=0.0, trending=0.0), fold_in, False, False)
    w = replace(weights, session=weights.session if session else 0.0, trending=weights.trending if trending else 0.0)
    return Variant(kind, kind, w, fold_in, session, trending)


def standard_variants(
    weights: MergeWeights,
    kinds: tuple[Kind, ...] | list[Kind] = KINDS,
    *,
    fold_in: bool = True,
    session: bool = True,
    trending: bool = True,
) -> list[Variant]:
    """The named variants, in the order given, with the ablation switches applied where they mean something."""
    return [make_variant(k, weights, fold_in=fold_in, session=session, trending=trending) for k in kinds]


def parse_kinds(text: str) -> list[Kind]:
    """``"batch,lambda"`` -> ``["batch", "lambda"]``; ``"all"`` gives every variant.

    Raises
    ------
    ValueError
        A name is not a variant, naming the ones that are.
    """
    if text.strip() == "all":
        return list(KINDS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in KINDS]
    if bad or not names:
        raise ValueError(f"unknown variant(s) {bad or text!r}; expected a comma-separated list of {', '.join(KINDS)}")
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


def recommend(
    variant: Variant, model: SnapshotModel, *, k: int, exclude: frozenset[str] = frozenset(), **state: Any
) -> list[str]:
    """The variant's top-``k`` item ids for one user at ``now_s``, given the state read for that moment (``row``,
    ``fresh``, ``session``, ``trending``, ``now_s`` and ``user_id``, as :func:`request` takes them).

    The request is the one a product service would send: the user, ``k``, the items of the current
    session, which serving stamps with the request time, and ``exclude``: what the user has already consumed
    (the same for every variant, see the module docstring).
    """
    if variant.kind == "popular":
        return popular(model, state["row"], state["fresh"], k, exclude)
    ask = request(variant, model, k=k, exclude=exclude, **state)
    return [r.item_id for r in rank_many(model, [ask])[0][0]]


def request(
    variant: Variant,
    model: SnapshotModel,
    *,
    row: UserRow | None,
    fresh: FreshUser | None,
    session: list[tuple[str, float]],
    trending: TrendingScores | np.ndarray | None,
    now_s: float,
    k: int,
    user_id: str | None = None,
    exclude: frozenset[str] = frozenset(),
    queries: dict[tuple[str, ...], RecommendQuery] | None = None,
) -> RankRequest:
    """The request serving gets for :func:`recommend` of a variant other than ``popular``, for
    :func:`serving_layer.recommend.rank_many`: the replay ranks many of them in one block. ``queries``: the
    queries already built for the same user, ``k``, ``exclude`` and moment (the variants of one event), by
    session items: a variant asking the same query shares it (queries are immutable)."""
    if variant.kind == "batch":
        fresh, session, trending = None, [], None
    else:
        if fresh is not None and not variant.fold_in:
            # no vector, but stamped with this basis: serving would otherwise re-solve it (rebase)
            fresh = FreshUser(user_id=fresh.user_id, events=fresh.events, recent=fresh.recent, basis=model.version)
        session = session if variant.session else []
        trending = trending if variant.trending else None
    items = tuple(map(_item, session))
    query = queries.get(items) if queries is not None else None
    if query is None:
        query = RecommendQuery(user_id=user_id, k=k, session_items=items, exclude=exclude)
        if queries is not None:
            queries[items] = query
    return RankRequest(query, UserState(row, fresh), variant.weights, trending, now_s)


def popular(
    model: SnapshotModel, row: UserRow | None, fresh: FreshUser | None, k: int, exclude: frozenset[str]
) -> list[str]:
    """The ``k`` most popular items the user has not seen (batch history, ``exclude``, fresh events and recent
    items): the ``popular`` variant's list."""
    return popular_many(model, [row], [fresh], k, [item_indices(model, exclude, lambda: exclude)])[0]


def popular_many(
    model: SnapshotModel,
    rows: Sequence[UserRow | None],
    fresh: Sequence[FreshUser | None],
    k: int,
    exclude: Sequence[np.ndarray],
) -> list[list[str]]:
    """:func:`popular` of many users at once (one seen table, one pass over the popular order's head);
    ``exclude[u]``: the indices in ``model`` of the items user ``u``'s ``exclude`` names."""
    index = model.item_index
    touched = [() if f is None else chain(map(_item, f.events), map(_item, f.recent)) for f in fresh]
    counts = [0 if f is None else len(f.events) + len(f.recent) for f in fresh]
    found = np.fromiter(map(index.get, chain.from_iterable(touched), repeat(-1)), dtype=np.int64)
    owner = np.repeat(np.arange(len(fresh)), counts)
    history = [np.asarray(r.history, dtype=np.int64) if r is not None else np.empty(0, np.int64) for r in rows]
    seen = seen_table(len(model.item_ids), history)
    seen[np.repeat(np.arange(len(exclude)), [x.size for x in exclude]), np.concatenate(exclude)] = True
    seen[owner[found >= 0], found[found >= 0]] = True
    head = model.popular_order[: k + int(seen.sum(axis=1).max(initial=0))]
    user, at = cells(~seen[:, head])  # by user, then popularity
    first = np.searchsorted(user, user)
    keep = np.arange(user.size) - first < k
    user, picked = user[keep], model.item_ids[head[at[keep]]].astype(str).tolist()
    bounds = np.searchsorted(user, np.arange(len(fresh) + 1)).tolist()
    return [picked[s:e] for s, e in pairwise(bounds)]
