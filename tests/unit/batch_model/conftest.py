"""Synthetic matrices with planted structure for the batch layer's model side."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp


def planted(users: int = 480, clusters: int = 8, items_per_cluster: int = 30, seed: int = 0):
    """Users in clusters, each interacting with items of its own cluster, plus a few globally popular items.

    Returns (train, holdout) CSR matrices: 12 training and 3 held-out items of the user's cluster each, and
    3 training interactions with 10 "popular" items shared by everyone (so popularity is a real baseline).
    """
    rng = np.random.default_rng(seed)
    popular = 10
    n_items = popular + clusters * items_per_cluster
    train_cols, hold_rows, hold_cols = [], [], []
    for u in range(users):
        base = popular + (u % clusters) * items_per_cluster
        picks = base + rng.choice(items_per_cluster, 15, replace=False)
        train_cols += list(picks[:12]) + list(rng.choice(popular, 3, replace=False))
        hold_rows += [u] * 3
        hold_cols += list(picks[12:])
    train = sp.csr_matrix(
        (np.ones(len(train_cols), np.float32), (np.repeat(np.arange(users), 15), train_cols)), (users, n_items)
    )
    holdout = sp.csr_matrix((np.ones(len(hold_cols), np.float32), (hold_rows, hold_cols)), (users, n_items))
    return train, holdout


@pytest.fixture(scope="session")
def planted_data():
    return planted()
