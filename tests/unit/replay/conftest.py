"""A tiny snapshot model and an in-memory stand-in for the store's snapshot-row reads."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.model.snapshot import SnapshotModel
from lambdarec.store import UserRow

N_ITEMS, F = 30, 6


def make_model(version: str = "v1", cutoff_s: float = 1000.0, seed: int = 0) -> SnapshotModel:
    """Items i0..i29, i0 the most popular; random factors; each item's 5 nearest items as neighbours."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(N_ITEMS, F)).astype(np.float32)
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :5].astype(np.int32)
    return SnapshotModel(
        version=version,
        manifest={"data_cutoff_s": cutoff_s, "event_weights": {"view": 1.0, "click": 2.0}},
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)]),
        user_ids=np.array(["u1"]),
        item_factors=factors,
        yty=factors.T.astype(np.float64) @ factors,
        popularity_all=np.arange(N_ITEMS, 0, -1).astype(np.float32),
        popularity_recent=np.ones(N_ITEMS, dtype=np.float32),
        neighbours=neighbours,
        neighbour_scores=np.take_along_axis(sims, neighbours, axis=1).astype(np.float32),
        solver={"regularization": 0.1, "alpha": 1.0},
    )


class RowStore:
    """Answers ``read_user``/``read_users`` from a dict, like the store does for one snapshot version."""

    def __init__(self, rows: dict[str, UserRow]):
        self.rows = rows
        self.reads = 0

    def read_user(self, version: str, user_id: str) -> UserRow | None:
        self.reads += 1
        return self.rows.get(user_id)

    def read_users(self, version: str, user_ids) -> dict[str, UserRow]:
        self.reads += 1
        return {u: self.rows[u] for u in user_ids if u in self.rows}


def user_row(user_id: str, candidates: list[int], history: list[int]) -> UserRow:
    return UserRow(
        user_id,
        np.array(candidates, dtype=np.int32),
        np.linspace(1.0, 0.5, len(candidates)).astype(np.float32),
        np.array(history, dtype=np.int32),
        np.ones(len(history), dtype=np.float32),
    )


@pytest.fixture
def model() -> SnapshotModel:
    return make_model()


@pytest.fixture
def store() -> RowStore:
    return RowStore({"u1": user_row("u1", [5, 6, 7, 8, 9, 10], [0, 1])})
