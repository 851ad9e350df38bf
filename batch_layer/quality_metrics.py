"""The quality gate's metrics: Recall@K and NDCG@K of the model's top-K, and of a popularity baseline, on a holdout.

Definitions, averaged over the users with at least one held-out item (held-out items the user already has in
training are dropped first: the candidates exclude them, so no model could ever return them):

* ``Recall@K = hits / min(K, |holdout|)`` (so a perfect list scores 1 whatever the holdout size);
* ``NDCG@K = sum over hits at rank r (0-based) of 1 / log2(r + 2)``, divided by the same sum for the ideal list
  of ``min(K, |holdout|)`` hits.

Example
-------
>>> import scipy.sparse as sp
>>> held = sp.csr_matrix(np.array([[0, 1, 1, 0]], np.float32))
>>> m = ranking_metrics(np.array([[1, 3]]), held, k=2)
>>> round(m.recall, 3), round(m.ndcg, 3)
(0.5, 0.613)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from batch_layer.candidates import Searcher, iter_candidates


@dataclass(frozen=True)
class RankingMetrics:
    """Recall@K and NDCG@K averaged over ``users`` evaluated users."""

    recall: float
    ndcg: float
    users: int
    k: int


@dataclass(frozen=True)
class GateMetrics:
    """The model's metrics and the popularity baseline's, on the same users and holdout."""

    model: RankingMetrics
    popularity: RankingMetrics


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _row_keys(csr: sp.csr_matrix) -> np.ndarray:
    """Sorted ``row * n_cols + col`` of every stored entry."""
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    return np.sort(rows * csr.shape[1] + csr.indices.astype(np.int64))


def _hits(top_items: np.ndarray, holdout: sp.csr_matrix) -> np.ndarray:
    """bool ``[users, K]``: whether each listed item is in that user's holdout row."""
    keys = _row_keys(holdout)
    query = np.arange(len(top_items), dtype=np.int64)[:, None] * holdout.shape[1] + np.maximum(top_items, 0)
    if keys.size == 0:
        return np.zeros(top_items.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return (keys[pos] == query) & (top_items >= 0)


def _sums(top_items: np.ndarray, holdout: sp.csr_matrix, k: int) -> tuple[float, float, int]:
    """Summed recall, summed NDCG and the number of users with a non-empty holdout."""
    sizes = np.diff(holdout.indptr)
    hits = _hits(top_items[:, :k], holdout)
    ideal = np.minimum(sizes, k)
    users = ideal > 0
    disc = _discounts(k)
    idcg = np.concatenate([[1.0], np.cumsum(disc)])[ideal]
    recall = hits.sum(1)[users] / ideal[users]
    ndcg = (hits * disc[: hits.shape[1]]).sum(1)[users] / idcg[users]
    return float(recall.sum()), float(ndcg.sum()), int(users.sum())


def user_metrics(top_items: np.ndarray, holdout: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row Recall@``k`` and NDCG@``k`` (as :func:`ranking_metrics` averages them); NaN for an empty row.

    For paired comparisons: two models' values on the same rows differ user by user, not only on average.

    Example
    -------
    >>> r, n = user_metrics(np.array([[0], [1]]), sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0]])), 1)
    >>> r.tolist(), np.isnan(n).tolist()
    ([1.0, nan], [False, True])
    """
    holdout = sp.csr_matrix(holdout)
    sizes = np.diff(holdout.indptr)
    hits = _hits(top_items[:, :k], holdout)
    ideal = np.minimum(sizes, k)
    disc = _discounts(k)
    idcg = np.concatenate([[1.0], np.cumsum(disc)])[ideal]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(ideal > 0, hits.sum(1) / ideal, np.nan)
        ndcg = np.where(ideal > 0, (hits * disc[: hits.shape[1]]).sum(1) / idcg, np.nan)
    return recall, ndcg


def ranking_metrics(top_items: np.ndarray, holdout: sp.csr_matrix, k: int) -> RankingMetrics:
    """Recall@``k`` and NDCG@``k`` of ranked lists against held-out items (see the module docstring).

    Parameters
    ----------
    top_items
        int ``[users, >= k]`` item indices, best first; ``-1`` pads.
    holdout
        CSR ``[users, n_items]``, rows aligned with ``top_items``; stored entries are the held-out items.
    k
        Cut-off.

    Example
    -------
    >>> ranking_metrics(np.array([[0]]), sp.csr_matrix(np.array([[1.0, 0.0]])), 1).recall
    1.0
    """
    if top_items.ndim != 2 or len(top_items) != holdout.shape[0] or top_items.shape[1] < k:
        raise ValueError(
            f"top_items has shape {top_items.shape}; expected [{holdout.shape[0]} users (holdout rows), >= {k}]"
        )
    recall, ndcg, users = _sums(top_items, sp.csr_matrix(holdout), k)
    return RankingMetrics(recall=recall / max(users, 1), ndcg=ndcg / max(users, 1), users=users, k=k)


def popular_unseen(order: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Each user's first ``k`` items of the global ranking ``order`` that are not in their ``seen`` row.

    Vectorised: with a user's seen ranks sorted as ``s_0 < s_1 < ...`` and ``t_m = s_m - m``, the ``j``-th unseen
    item sits at rank ``j + #{m : t_m <= j}``.

    Example
    -------
    >>> popular_unseen(np.array([2, 0, 1]), sp.csr_matrix(np.array([[1.0, 0, 1], [0, 0, 0]])), 2).tolist()
    [[1, -1], [2, 0]]
    """
    n_users, n_items = seen.shape
    rank_of = np.empty(n_items, dtype=np.int64)
    rank_of[order] = np.arange(n_items)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(seen.indptr))
    span = n_items + 1
    ranked = np.sort(rows * span + rank_of[seen.indices])  # per user, seen ranks ascending
    starts = seen.indptr[:-1].astype(np.int64)
    shifted = ranked - (np.arange(ranked.size) - starts[rows])  # row * span + t_m, still sorted
    j = np.arange(k, dtype=np.int64)
    query = np.arange(n_users, dtype=np.int64)[:, None] * span + j
    before = np.searchsorted(shifted, query, side="right") - starts[:, None]
    position = j + before
    return np.where(position < n_items, order[np.minimum(position, n_items - 1)], -1).astype(np.int32)


def evaluate_gate(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: sp.csr_matrix,
    holdout: sp.csr_matrix,
    k: int,
    *,
    popularity_scores: np.ndarray | None = None,
    block: int = 4096,
    threads: int = 0,
    searcher: Searcher | None = None,
) -> GateMetrics:
    """The gate's metrics for a model and for popularity, over users with held-out items.

    Parameters
    ----------
    user_factors, item_factors
        The trained model (rows aligned with ``train``'s users and items).
    train, holdout
        CSR ``[n_users, n_items]``: training interactions (excluded from every list) and held-out ones.
    k
        ``batch.gate.k``.
    popularity_scores
        float ``[n_items]`` for the baseline; default the number of training users per item.
    block, threads, searcher
        As for :func:`batch_layer.candidates.iter_candidates`.

    Example
    -------
    >>> train, held = sp.csr_matrix(np.array([[1.0, 0, 0]])), sp.csr_matrix(np.array([[0, 0, 1.0]]))
    >>> gate = evaluate_gate(np.ones((1, 1), np.float32), np.array([[3.0], [1.0], [2.0]], np.float32), train, held, 1)
    >>> gate.model.recall, gate.popularity.recall
    (1.0, 0.0)
    """
    train, holdout = sp.csr_matrix(train), sp.csr_matrix(holdout)
    if train.shape != holdout.shape or train.shape != (len(user_factors), len(item_factors)):
        raise ValueError(
            f"train {train.shape} and holdout {holdout.shape} must both be (n_users, n_items) = "
            f"({len(user_factors)}, {len(item_factors)})"
        )
    fresh = (holdout - holdout.multiply(train.astype(bool))).tocsr()
    fresh.eliminate_zeros()
    users = np.flatnonzero(np.diff(fresh.indptr))
    scores = np.bincount(train.indices, minlength=train.shape[1]) if popularity_scores is None else popularity_scores
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sums = np.zeros(4)
    for rows, top, _ in iter_candidates(
        user_factors, item_factors, train, k, block, threads=threads, searcher=searcher, users=users
    ):
        held = fresh[rows]
        model_recall, model_ndcg, _ = _sums(top, held, k)
        pop_recall, pop_ndcg, _ = _sums(popular_unseen(order, train[rows], k), held, k)
        sums += (model_recall, model_ndcg, pop_recall, pop_ndcg)
    recall, ndcg, pop_recall, pop_ndcg = (float(x) for x in sums / max(len(users), 1))
    return GateMetrics(
        model=RankingMetrics(recall=recall, ndcg=ndcg, users=len(users), k=k),
        popularity=RankingMetrics(recall=pop_recall, ndcg=pop_ndcg, users=len(users), k=k),
    )
