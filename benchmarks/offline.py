"""The offline protocol shared by the ``quality`` benchmark and the defaults study: a time split, warm users,
strong simple baselines, per-user NDCG@K and paired bootstrap intervals.

Protocol: read the whole log (no lookback), cut it at the time of the ``fraction`` quantile of its events; train
on the events before, score each **warm** user (seen in training) on all their later items that are not in their
training history. Every model's training items are removed from its list. Values are per user, so two models
compare user by user (paired bootstrap over users).

Baselines (the references; none of them is our code path):

- ``popular``: items by the number of training users, unseen first;
- ``item-kNN``: cosine item-item similarity on the binary matrix, ``neighbours`` per item, scores ``X S``;
- ``EASE``: Steck's closed form ``B = I - P / diag(P)``, ``P = (X^T X + lambda I)^-1``, diagonal zeroed;
- ``implicit ALS``: :class:`implicit.als.AlternatingLeastSquares` on the binary matrix with its own ``alpha``.

Example
-------
>>> split = time_split("ml.parquet", 0.8)                                  # doctest: +SKIP
>>> ndcg = user_ndcg(ease_top(split, 200.0), split)                        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl
import scipy.sparse as sp

from batch_layer.interactions import read_interactions
from batch_layer.matrix import Interactions, build_matrix, index_of
from batch_layer.quality_metrics import popular_unseen, user_metrics
from lambdarec.settings import BatchSettings

K = 10
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Split:
    """Training interactions and the warm users' later, unseen items."""

    frame: pl.DataFrame  # training events (canonical columns)
    data: Interactions  # training matrix (summed weights)
    held: sp.csr_matrix  # [users, items] later items not in training, over the training layout
    warm: np.ndarray  # user indices with at least one held item
    split_ms: int

    @property
    def binary(self) -> sp.csr_matrix:
        m = self.data.matrix.copy()
        m.data[:] = 1.0
        return m


def time_split(source: str, fraction: float, *, until_fraction: float = 1.0) -> Split:
    """Train before the ``fraction`` time quantile; hold out what follows up to the ``until_fraction`` quantile."""
    frame, _ = read_interactions(source, BatchSettings(lookback_days=None), as_of=_FAR)
    ts = frame["ts"].sort()
    cut = int(ts[int(frame.height * fraction)])
    end = int(ts[min(int(frame.height * until_fraction), frame.height - 1)])
    train = frame.filter(pl.col("ts") < cut)
    later = frame.filter((pl.col("ts") >= cut) & (pl.col("ts") <= end))
    data = build_matrix(train)
    users = index_of(later["user_id"], data.user_ids)
    items = index_of(later["item_id"], data.item_ids)
    keep = (users >= 0) & (items >= 0)
    held = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (users[keep], items[keep])), shape=data.shape)
    held.sum_duplicates()
    held.data[:] = 1.0
    held = (held - held.multiply(data.matrix.astype(bool))).tocsr()
    held.eliminate_zeros()
    warm = np.flatnonzero(np.diff(held.indptr))
    return Split(frame=train, data=data, held=held, warm=warm, split_ms=cut)


def user_ndcg(top: np.ndarray, split: Split, k: int = K) -> np.ndarray:
    """NDCG@k per warm user (rows of ``top`` aligned with ``split.warm``)."""
    return user_metrics(top, split.held[split.warm], k)[1]


def top_from_scores(scores: np.ndarray, seen: sp.csr_matrix, k: int = K) -> np.ndarray:
    """Top-``k`` item indices per row of dense ``scores``, the row's ``seen`` items excluded."""
    scores = np.array(scores, dtype=np.float64)
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def popular_top(split: Split, k: int = K) -> np.ndarray:
    counts = np.bincount(split.binary.indices, minlength=split.data.shape[1])
    order = np.argsort(-counts, kind="stable")
    return popular_unseen(order, split.data.matrix[split.warm], k)


def itemknn_top(split: Split, neighbours: int = 100, k: int = K) -> np.ndarray:
    x = split.binary
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    xn = x @ sp.diags(1.0 / np.maximum(norms, 1e-12))
    sim = (xn.T @ xn).toarray()
    np.fill_diagonal(sim, 0.0)
    if neighbours < sim.shape[0]:
        drop = np.argpartition(-sim, neighbours, axis=0)[neighbours:]
        np.put_along_axis(sim, drop, 0.0, axis=0)
    seen = x[split.warm]
    return top_from_scores(seen @ sim, seen, k)


def ease_top(split: Split, lam: float, k: int = K) -> np.ndarray:
    x = split.binary
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    seen = x[split.warm]
    return top_from_scores(seen @ b, seen, k)


def implicit_als_top(split: Split, factors: int, regularization: float, alpha: float, k: int = K) -> np.ndarray:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=alpha, iterations=15, random_state=0
        )
        model.fit(split.binary, show_progress=False)
    scores = np.asarray(model.user_factors)[split.warm] @ np.asarray(model.item_factors).T
    return top_from_scores(scores, split.data.matrix[split.warm], k)


def ours_top(split: Split, batch: BatchSettings, k: int = K) -> np.ndarray:
    """Our trainer (:func:`batch_layer.train.train`) with ``batch``, scored as the batch layer scores."""
    from batch_layer.candidates import iter_candidates
    from batch_layer.train import train

    factors = train(split.data.matrix, batch, show_progress=False)
    top = np.full((split.warm.size, k), -1, dtype=np.int64)
    where = {int(u): j for j, u in enumerate(split.warm.tolist())}
    for rows, items, _ in iter_candidates(
        factors.user_factors, factors.item_factors, split.data.matrix, k, 4096, threads=1, users=split.warm
    ):
        for r, row in zip(rows.tolist(), items, strict=True):
            top[where[int(r)]] = row[:k]
    return top


def paired_ratio(ours: np.ndarray, ref: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``mean(ours) / mean(ref)`` over users and its 95% paired bootstrap interval (users resampled)."""
    n = ours.size
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    num, den = ours[idx].mean(axis=1), ref[idx].mean(axis=1)
    ratios = np.divide(num, den, out=np.full(draws, np.inf), where=den > 0)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(ours.mean() / ref.mean()) if ref.mean() > 0 else float("inf"), float(lo), float(hi)
