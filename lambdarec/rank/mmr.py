"""Maximal marginal relevance: trade relevance for diversity when picking a list."""

from __future__ import annotations

import numpy as np


def mmr_order(order: np.ndarray, relevance: np.ndarray, vectors: np.ndarray, lam: float, n: int) -> np.ndarray:
    """Greedy MMR over candidates already sorted by relevance.

    Picks ``n`` positions; each next one maximises ``(1 - lam) * relevance - lam * max cosine to those picked``.
    ``lam = 0`` keeps the relevance order. Ties keep the incoming order, so the result is deterministic.

    Example
    -------
    >>> mmr_order(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5]), np.eye(3), 0.5, 2).tolist()
    [0, 1]
    """
    if lam <= 0 or order.size == 0:
        return order[:n] if n < order.size else order
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    remaining = list(order.tolist())
    picked: list[int] = []
    max_sim = np.full(len(relevance), -np.inf, dtype=np.float32)
    while remaining and len(picked) < n:
        cand = np.asarray(remaining)
        penalty = np.where(np.isfinite(max_sim[cand]), max_sim[cand], 0.0)
        gain = (1 - lam) * relevance[cand] - lam * penalty
        best = int(cand[int(np.argmax(gain))])
        picked.append(best)
        remaining.remove(best)
        max_sim = np.maximum(max_sim, unit @ unit[best])
    return np.asarray(picked, dtype=np.int64)
