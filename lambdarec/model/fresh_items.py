"""Brand-new items: vectors for items that appear in events after the snapshot, and the snapshot model extended
with them. Pure functions; shared by the speed layer (which keeps the terms) and serving (which solves and
extends).

**The item step.** For an item ``j`` the snapshot lacks, the vector is ALS's closed-form item solve against the
vectors ``x_u`` of the users who interacted with it, with confidences ``c_u = 1 + alpha * w_u`` (``w_u`` their
summed event weight) and preference 1::

    y_j = (X^T X + sum_u (c_u - 1) x_u x_u^T + lambda I)^-1  sum_u c_u x_u

``X^T X`` is the Gram matrix of the snapshot's user factors (the ``xtx`` array; snapshots published before it
existed have none, and then no brand-new item gets a vector). This is :func:`lambdarec.model.foldin.fold_in`
with the roles of users and items swapped, and equals implicit's ``recalculate_item``.

**Where the terms live.** The speed layer keeps, in each item's trending shard (one per item and log partition,
written by one consumer), the weight and the fold-in vector of each user of that partition who interacted with
the item, stamped with the snapshot they were solved against (``TrendingItem.terms``, ``basis``). On a flip the
speed layer re-solves those users' vectors against the new snapshot when it next writes the shard
(:mod:`speed_layer.fresh_items`); serving reads shards of the served snapshot only.

Example
-------
>>> ids, vectors = fresh_item_vectors(store.read_trending(None).values(), model)    # doctest: +SKIP
>>> extended = extend(model, ids, vectors)                                           # doctest: +SKIP
>>> extended.item_index[ids[0]] == len(model.item_ids)                               # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.foldin import confidence, fold_in_many
from lambdarec.model.rows import ShardTerms, TrendingItem

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def item_step(
    user_vectors: np.ndarray, weights: np.ndarray, xtx: np.ndarray, *, alpha: float, regularization: float
) -> np.ndarray:
    """One item's ALS vector from its users' vectors ``[m, f]`` and summed weights ``[m]`` (see the module
    docstring); float32 ``[f]``.

    Example
    -------
    >>> x = np.eye(2, dtype=np.float32)
    >>> item_step(x[:1], np.array([2.0]), np.eye(2), alpha=1.0, regularization=1.0).tolist()
    [0.75, 0.0]
    """
    users = np.asarray(user_vectors, dtype=np.float32)
    conf = confidence(weights, alpha)
    return fold_in_many(users, xtx, [(np.arange(len(users)), conf)], regularization)[0]


def item_users(shards: Iterable[TrendingItem], model: SnapshotModel) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per item the snapshot lacks: its users' summed weights ``[m]`` (float64) and vectors ``[m, f]`` (float32)
    from the shards solved against ``model``. A user seen before any vector was known has only a weight: left
    out; a user in two shards of one item counts once (the later shard's terms)."""
    index, f = model.item_index, model.item_factors.shape[1]
    parts: dict[str, list[ShardTerms]] = {}
    for shard in shards:
        if shard.basis != model.version or not shard.term_users or shard.item_id in index:
            continue
        terms = shard.terms
        if terms.vectors.shape[1] == f:
            parts.setdefault(shard.item_id, []).append(terms.select(terms.with_vector))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for item, pieces in parts.items():
        users = [u for p in pieces for u in p.users]
        last = {u: i for i, u in enumerate(users)}  # first seen order, the later shard's row
        if not last:
            continue
        rows = np.fromiter(last.values(), dtype=np.int64, count=len(last))
        weights = np.concatenate([p.weights for p in pieces])[rows]
        vectors = np.concatenate([p.vectors for p in pieces])[rows]
        out[item] = (weights, vectors)
    return out


def fresh_item_vectors(shards: Iterable[TrendingItem], model: SnapshotModel) -> tuple[list[str], np.ndarray]:
    """The brand-new items of the trending shards (sorted ids) and their item-step vectors ``[m, f]``; none when
    the snapshot has no ``xtx`` (published before brand-new items were supported)."""
    f = model.item_factors.shape[1]
    if model.xtx is None:
        return [], np.zeros((0, f), dtype=np.float32)
    by_item = item_users(shards, model)
    ids = sorted(by_item)
    alpha, reg = model.solver.get("alpha", 1.0), model.solver.get("regularization", 0.0)
    problems, vectors, at = [], [], 0
    for item in ids:
        weights, rows = by_item[item]
        problems.append((np.arange(len(weights)) + at, confidence(weights, alpha)))
        vectors.append(rows)
        at += len(weights)
    if not ids:
        return ids, np.zeros((0, f), dtype=np.float32)
    return ids, fold_in_many(np.concatenate(vectors), model.xtx, problems, reg)


def extend(model: SnapshotModel, ids: list[str], vectors: np.ndarray) -> SnapshotModel:
    """``model`` with the brand-new items ``ids`` appended after its own (same version): their vectors, no
    popularity, and their nearest items by cosine as neighbours, so the merge, trending and similar items treat
    them as any other item. The snapshot's own rows and indices are unchanged."""
    if not ids:
        return model
    factors = np.vstack([model.item_factors, np.asarray(vectors, dtype=np.float32)])
    norms = np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
    unit = (factors / norms).astype(np.float32)
    n, m = len(model.item_ids), len(ids)
    width = model.neighbours.shape[1]
    neighbours = np.full((m, width), -1, dtype=np.int32)
    scores = np.zeros((m, width), dtype=np.float32)
    if width:
        sims = unit[n:] @ unit.T
        sims[np.arange(m), n + np.arange(m)] = -np.inf  # not its own neighbour
        k = min(width, n + m - 1)
        if k > 0:
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            neighbours[:, :k] = top
            scores[:, :k] = np.take_along_axis(sims, top, axis=1)
    zeros = np.zeros(m, dtype=np.float32)
    return replace(
        model,
        item_ids=np.concatenate([model.item_ids.astype(object), np.asarray(ids, dtype=object)]).astype(str),
        item_factors=factors,
        popularity_all=np.concatenate([model.popularity_all, zeros]),
        popularity_recent=np.concatenate([model.popularity_recent, zeros]),
        neighbours=np.vstack([model.neighbours, neighbours]),
        neighbour_scores=np.vstack([model.neighbour_scores, scores]),
        fresh_items=m,
    )


def with_fresh_items(shards: Iterable[TrendingItem], model: SnapshotModel) -> SnapshotModel:
    """``model`` extended with the brand-new items of ``shards`` (the served model of serving and replay)."""
    base = model if not model.fresh_items else _base(model)
    return extend(base, *fresh_item_vectors(shards, base))


def _base(model: SnapshotModel) -> SnapshotModel:
    n = len(model.item_ids) - model.fresh_items
    return replace(
        model,
        item_ids=model.item_ids[:n],
        item_factors=model.item_factors[:n],
        popularity_all=model.popularity_all[:n],
        popularity_recent=model.popularity_recent[:n],
        neighbours=model.neighbours[:n],
        neighbour_scores=model.neighbour_scores[:n],
        fresh_items=0,
    )
