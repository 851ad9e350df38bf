"""Train embeddings from the user x item matrix: one entry point, one module per outside library.

:func:`train` picks the trainer named by ``batch.train.model``: implicit ALS or BPR
(:mod:`batch_layer.train.implicit_mf`) or torch matrix factorisation (:mod:`batch_layer.train.torch_mf`, imported
only when asked for).

Example
-------
>>> import scipy.sparse as sp
>>> from lambdarec.settings import BatchSettings
>>> m = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
>>> f = train(m, BatchSettings(train={"factors": 8, "iterations": 2}, device="cpu"), show_progress=False)
>>> f.user_factors.shape, f.item_factors.shape
((20, 8), (30, 8))
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lambdarec.model.factors import Factors
from lambdarec.settings import BatchSettings


def check_matrix(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The interaction matrix as canonical float32 CSR, or an error naming what is wrong with it.

    Example
    -------
    >>> check_matrix(sp.coo_matrix(np.array([[0.0, 2.0]]))).format
    'csr'
    """
    if not sp.issparse(matrix):
        raise TypeError(f"matrix must be a scipy.sparse user x item matrix; got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if csr.shape[0] == 0 or csr.shape[1] == 0:
        raise ValueError(f"matrix has shape {csr.shape}; it needs at least one user and one item")
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if csr.nnz and (not np.isfinite(csr.data).all() or csr.data.min() < 0):
        raise ValueError("matrix weights must be finite and >= 0 (confidence = 1 + alpha * weight)")
    return csr


def train(matrix: sp.spmatrix, settings: BatchSettings, *, show_progress: bool = True) -> Factors:
    """Fit the model ``settings.train.model`` on ``matrix`` (users x items, float32 weights).

    Parameters
    ----------
    matrix
        scipy.sparse ``[n_users, n_items]``; a stored value is the summed weight of a user's interactions with
        an item (dense indices ``0..n-1``).
    settings
        ``batch`` settings: model, factors, iterations, regularization, alpha, learning_rate, torch_*, seed,
        threads, device.
    show_progress
        Show a tqdm progress bar per iteration or epoch.

    Returns
    -------
    Factors
        float32 user and item factors and the solver terms for the speed layer's fold-in.
    """
    csr = check_matrix(matrix)
    if settings.train.model in ("als", "bpr"):
        from batch_layer.train.implicit_mf import train_implicit

        return train_implicit(csr, settings, show_progress=show_progress)
    if settings.train.model == "torch":
        from batch_layer.train.torch_mf import train_torch

        return train_torch(csr, settings, show_progress=show_progress)
    raise ValueError(f"batch.model must be 'als', 'bpr' or 'torch'; got {settings.train.model!r}")
