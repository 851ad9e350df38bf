"""One request -> response path for a user's recommendations, shared by ``GET /v1/users/{id}/recommendations``,
``POST /v1/recommendations`` and ``lambdarec recommend``: read the user's state, rebase a stale fresh vector,
call the shared merge, shape the body.

The HTTP routes read the state through the store gate (thread pool, timeout, degraded fallback); the CLI reads
it directly. Everything after the read is :func:`recommend`, the same for both.

Example
-------
>>> state = read_states(store, model.version, ["u1"], len(model.item_ids))["u1"]   # doctest: +SKIP
>>> body, fallback = recommend(model, RecommendQuery("u1", k=10), state, weights=w, trending=None, now_s=t)
>>> body.items[0].source
'batch'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lambdarec.catalog.explain import EXPLAIN_DEPTH, with_rule_components
from lambdarec.catalog.rules import RequestFilters
from lambdarec.catalog.view import CatalogView
from lambdarec.model.freshstate import erased_for, rebase
from lambdarec.model.rows import NO_STATE, FreshUser, UserRow, UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.merge import MergeInput, MergeWeights, Ranked, fresh_vector, merge, merge_many
from lambdarec.rank.trending import TrendingScores
from lambdarec.store import OnlineStore
from lambdarec.store.codec import check_user_indices
from lambdarec.store.errors import CorruptRowError
from serving_layer.schemas import Recommendations, RecommendedItem
from serving_layer.shown_reads import read_shown_rows, with_shown

DEGRADED_HEADER = "X-Lambdarec-Degraded"
STORE_UNAVAILABLE = "store-unavailable"  # the store could not be read: the list comes from memory
CORRUPT_ROW = "corrupt-row"  # the user's batch row failed its checks: fresh state and fallbacks only


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    """What a caller asked for. ``user_id`` None is an anonymous session (or basket) of ``session_items``."""

    user_id: str | None
    k: int
    offset: int = 0
    session_items: tuple[str, ...] = ()  # oldest first; they happen "now"
    exclude: frozenset[str] = field(default_factory=frozenset)
    explain: bool = False
    session_id: str | None = None  # assigns an anonymous request to an experiment arm
    impressions: bool = False  # write an impression event for the returned items
    experiment: str | None = None  # the experiment arm the list is served under (set by serving_layer.arms)
    arm: str | None = None
    impression_id: str | None = None  # the impression event serving wrote for this list (set by serving)
    filters: RequestFilters | None = None  # categories, exclude_categories, filter; None: the global rules only


def read_states(
    store: OnlineStore,
    version: str,
    user_ids: Iterable[str],
    n_items: int,
    known_rows: Mapping[str, UserRow] | None = None,
    shown: bool = False,
) -> dict[str, UserState]:
    """Every user's batch row in ``version`` and fresh state, in two store reads; unknown users get ``NO_STATE``.
    ``shown``: their impressions rows too, joined to the fresh state (``speed.feedback.own_consumer``).

    A batch row that fails its checksum, or names items outside the snapshot's ``n_items``, or a fresh state that
    does not decode, is left out and the user's state says why (``corrupt``): it costs that user that part of
    their list, never the others theirs. ``known_rows``: batch rows of ``version`` already read and checked (a
    snapshot's rows never change), not read again; the fresh state is always read.
    """
    ids, unread = plan_reads(user_ids, known_rows)
    rows: dict[str, UserRow] | CorruptRowError
    fresh: dict[str, FreshUser] | CorruptRowError
    try:
        if not unread:
            rows = {}
        elif len(unread) == 1:
            row = store.read_user(version, unread[0])
            rows = {unread[0]: row} if row is not None else {}
        else:
            rows = store.read_users(version, unread)
    except CorruptRowError as exc:
        rows = exc
    try:
        fresh = store.read_fresh_users(ids) if ids else {}
    except CorruptRowError as exc:
        fresh = exc
    return with_shown(
        assemble_states(ids, rows, fresh, n_items, known_rows), read_shown_rows(store, ids) if shown else {}
    )


def plan_reads(user_ids: Iterable[str], known_rows: Mapping[str, UserRow] | None) -> tuple[list[str], list[str]]:
    """The distinct users, and those whose batch row must be read (not in ``known_rows``)."""
    ids = list(dict.fromkeys(user_ids))
    known = known_rows or {}
    return ids, [u for u in ids if u not in known]


def assemble_states(
    ids: list[str],
    rows: Mapping[str, UserRow] | CorruptRowError,
    fresh: Mapping[str, FreshUser] | CorruptRowError,
    n_items: int,
    known_rows: Mapping[str, UserRow] | None = None,
) -> dict[str, UserState]:
    """The users' states from what the row and fresh-state reads gave (a ``CorruptRowError`` carries the good
    rows and names the bad ones): see :func:`read_states`."""
    corrupt: dict[str, str] = {}
    if isinstance(rows, CorruptRowError):
        corrupt = {str(key): str(rows) for key in rows.keys}
        rows = rows.rows
    rows = dict(rows)
    for user_id, row in list(rows.items()):
        try:
            check_user_indices(row, n_items)
        except CorruptRowError as exc:
            del rows[user_id]
            corrupt[user_id] = str(exc)
    known = known_rows or {}
    rows.update((u, known[u]) for u in ids if u in known)
    if isinstance(fresh, CorruptRowError):  # the fresh state is left out; the batch row still serves
        corrupt.update((str(key), str(fresh)) for key in fresh.keys)
        fresh = fresh.rows
    return {
        u: UserState(rows.get(u), fresh.get(u), corrupt.get(u)) if u in rows or u in fresh or u in corrupt else NO_STATE
        for u in ids
    }


def recommend(
    model: SnapshotModel,
    query: RecommendQuery,
    state: UserState,
    *,
    weights: MergeWeights,
    trending: TrendingScores | np.ndarray | None,
    now_s: float,
    degraded: bool = False,
    catalog: CatalogView | None = None,
) -> tuple[Recommendations, bool]:
    """Rank for one user or session and shape the response body.

    Parameters
    ----------
    model
        The served snapshot.
    query
        The request; its session items get event time ``now_s``.
    state
        The user's batch row and fresh state (``NO_STATE`` for an unknown user or an anonymous session).
    weights
        ``MergeWeights.from_settings(settings.serving)``.
    trending
        Trending scores over ``model``'s items, or None.
    now_s
        Wall-clock epoch seconds: the session items' time and the decay reference.
    degraded
        Whether ``state`` came from memory because the store was unavailable (reported in the body, reason
        ``store-unavailable``); a ``state`` whose batch row was corrupt is reported degraded with ``corrupt-row``.
    catalog
        The catalog's view over ``model``: its rules and the query's filters decide which items may be ranked.

    Returns
    -------
    (Recommendations, bool)
        The body, and whether it was a fallback list (no batch row and no usable fresh vector).
    """
    ranked, fallback = rank(model, query, state, weights=weights, trending=trending, now_s=now_s, catalog=catalog)
    return shape(model, query, state, ranked, now_s, degraded), fallback


def shape(
    model: SnapshotModel, query: RecommendQuery, state: UserState, ranked: list[Ranked], now_s: float, degraded: bool
) -> Recommendations:
    """The response body of :func:`recommend` for the items :func:`rank` gave."""
    # model_construct: the merge already produced exactly these types, so validating them again per item is waste
    items = [
        RecommendedItem.model_construct(
            item_id=r.item_id,
            score=r.score if math.isfinite(r.score) else 0.0,
            source=r.source,  # type: ignore[arg-type]
            reason=r.reason,
            components=r.components or None,
        )
        for r in ranked
    ]
    return Recommendations.model_construct(
        user_id=query.user_id,
        snapshot=model.version,
        fresh_state_age_s=max(now_s - state.fresh.updated_at, 0.0) if state.fresh is not None else None,
        degraded=degraded or state.corrupt is not None,
        degraded_reason=STORE_UNAVAILABLE if degraded else CORRUPT_ROW if state.corrupt is not None else None,
        k=query.k,
        offset=query.offset,
        items=items,
        experiment=query.experiment,
        arm=query.arm,
        impression_id=query.impression_id,
    )


def rank(
    model: SnapshotModel,
    query: RecommendQuery,
    state: UserState,
    *,
    weights: MergeWeights,
    trending: TrendingScores | np.ndarray | None,
    now_s: float,
    catalog: CatalogView | None = None,
) -> tuple[list[Ranked], bool]:
    """The ranked items of :func:`recommend` before they are shaped into a response body.

    Replay scores its variants here: the same rebase and the same merge, without building a body per item.
    ``catalog``: the catalog's view over ``model`` (its rules and the query's filters); None ranks every item.
    Returns the items and whether they are a fallback list (no batch row and no usable fresh vector).
    """
    inp, fallback = merge_input(model, query, state, trending, now_s, catalog)
    ranked = merge(inp, weights, k=query.k, offset=query.offset, explain=query.explain)
    return _with_rules(ranked, inp, query, weights, catalog), fallback


@dataclass(frozen=True)
class RankRequest:
    """One request of :func:`rank_many`: the arguments of :func:`rank`."""

    query: RecommendQuery
    state: UserState
    weights: MergeWeights
    trending: TrendingScores | np.ndarray | None
    now_s: float
    catalog: CatalogView | None = None


def rank_many(model: SnapshotModel, requests: Sequence[RankRequest]) -> list[tuple[list[Ranked], bool]]:
    """:func:`rank` of many requests in one block merge (:func:`lambdarec.rank.merge.merge_many`): a replay
    ranks the variants of many events at once; each request gets what :func:`rank` gives it."""
    prepared = [merge_input(model, r.query, r.state, r.trending, r.now_s, r.catalog) for r in requests]
    ranked = merge_many(
        [inp for inp, _ in prepared],
        [r.weights for r in requests],
        k=[r.query.k for r in requests],
        offset=[r.query.offset for r in requests],
        explain=[r.query.explain for r in requests],
    )
    return [
        (_with_rules(items, inp, r.query, r.weights, r.catalog), fallback)
        for items, (inp, fallback), r in zip(ranked, prepared, requests, strict=True)
    ]


def merge_input(
    model: SnapshotModel,
    query: RecommendQuery,
    state: UserState,
    trending: TrendingScores | np.ndarray | None,
    now_s: float,
    catalog: CatalogView | None,
) -> tuple[MergeInput, bool]:
    """The merge's input for one request (erased history dropped, the fresh state rebased onto ``model``), and
    whether its list is a fallback list (no batch row and no usable fresh vector)."""
    if erased_for(state.fresh, model):  # a tombstone: nothing of the erased history may show
        state = UserState(None, state.fresh)
    fresh = state.fresh
    if fresh is not None and fresh.basis != model.version:
        fresh = rebase(fresh, model, state.batch_row)  # never score with a vector from another item space
    inp = MergeInput(
        model,
        batch_row=state.batch_row,
        fresh=fresh,
        session=[(item, now_s) for item in query.session_items],
        exclude=query.exclude,
        trending=trending,
        now_s=now_s,
        eligible=catalog.mask(query.filters) if catalog is not None else None,
    )
    return inp, state.batch_row is None and fresh_vector(model, fresh) is None


def _with_rules(
    ranked: list[Ranked], inp: MergeInput, query: RecommendQuery, weights: MergeWeights, catalog: CatalogView | None
) -> list[Ranked]:
    """``ranked`` with, in explain mode under the catalog's rules, which rule moved each item."""
    if query.explain and inp.eligible is not None and catalog is not None:
        unfiltered = merge(replace(inp, eligible=None), weights, k=query.offset + query.k + EXPLAIN_DEPTH)
        return with_rule_components(ranked, unfiltered, lambda item_id: catalog.reason(item_id, query.filters))
    return ranked
