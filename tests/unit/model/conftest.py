"""A small model trained by the batch layer, shared by the tests that compare our solves with implicit's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from batch_layer.train import train
from lambdarec.settings import BatchSettings


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(3)
    matrix = sp.random(300, 120, density=0.06, format="csr", dtype=np.float32, random_state=rng)
    matrix.data = (1 + 7 * matrix.data).astype(np.float32)
    settings = BatchSettings(
        train={"factors": 12, "iterations": 4, "regularization": 0.3, "alpha": 1.5}, device="cpu", threads=1
    )
    return matrix, settings, train(matrix, settings, show_progress=False)
