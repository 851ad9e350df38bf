"""A tiny snapshot model and an in-memory stand-in for the store's snapshot-row reads."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.model.snapshot import SnapshotModel
from lambdarec.store import UserRow
from tests.factories import snapshot_model

N_ITEMS, F = 30, 6


def make_model(version: str = "v1", cutoff_s: float = 1000.0, seed: int = 0) -> SnapshotModel:
    """Items i0..i29, i0 the most popular; random factors; each item's 5 nearest items as neighbours."""
    return snapshot_model(
        N_ITEMS,
        F,
        neighbours=5,
        version=version,
        cutoff_s=cutoff_s,
        seed=seed,
        event_weights={"view": 1.0, "click": 2.0},
        popularity_recent=np.ones(N_ITEMS, dtype=np.float32),
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
