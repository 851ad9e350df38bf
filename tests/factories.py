"""Small in-memory objects the unit tests build on, made one way everywhere."""

from __future__ import annotations

import numpy as np

from lambdarec.model.snapshot import SnapshotModel


def snapshot_model(
    n_items: int = 40,
    f: int = 8,
    *,
    neighbours: int = 10,
    version: str = "v1",
    cutoff_s: float = 1000.0,
    event_weights: dict[str, float] | None = None,
    popularity_recent: np.ndarray | None = None,
    solver: dict[str, float] | None = None,
    seed: int = 0,
) -> SnapshotModel:
    """Items i0..i{n-1}, i0 the most popular of all time; random factors; each item's nearest items as
    neighbours (cosine, self excluded). Recent popularity defaults to i{n-1} first."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_items, f)).astype(np.float32)
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1)[:, :neighbours].astype(np.int32)
    manifest: dict = {"data_cutoff_s": cutoff_s}
    if event_weights is not None:
        manifest["event_weights"] = event_weights
    return SnapshotModel(
        version=version,
        manifest=manifest,
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_factors=factors,
        yty=factors.T.astype(np.float64) @ factors,
        popularity_all=np.arange(n_items, 0, -1).astype(np.float32),
        popularity_recent=np.arange(n_items).astype(np.float32) if popularity_recent is None else popularity_recent,
        neighbours=near,
        neighbour_scores=np.take_along_axis(sims, near, axis=1).astype(np.float32),
        solver=solver or {},
    )
