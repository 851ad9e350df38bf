"""implicit's ALS and BPR on the CPU (or implicit's own CUDA build, where it has one).

Confidence convention: implicit >= 0.5 uses the matrix values themselves as the confidences ``c_ui`` of the
stored pairs (unstored pairs have confidence 1). We want ``c_ui = 1 + alpha * weight`` (Hu, Koren and Volinsky),
so we hand implicit the matrix ``1 + alpha * weight`` with implicit's own ``alpha`` left at 1. Passing
``alpha * weight`` instead would give a light interaction less confidence than an unseen pair.
:func:`lambdarec.model.foldin.fold_in` solves users with exactly these confidences.

Example
-------
>>> import scipy.sparse as sp
>>> from lambdarec.settings import BatchSettings
>>> m = sp.random(10, 12, density=0.3, format="csr", dtype=np.float32, random_state=0)
>>> train_implicit(m, BatchSettings(train={"factors": 4, "iterations": 1}, device="cpu"), show_progress=False).factors
4
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from batch_layer.train.device import resolve_device
from lambdarec.logs import get_logger
from lambdarec.model.factors import Factors, solver_terms
from lambdarec.settings import BatchSettings

log = get_logger(__name__)


def als_confidence(matrix: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """The matrix implicit's ALS trains on: stored values become ``1 + alpha * weight``.

    Example
    -------
    >>> als_confidence(sp.csr_matrix(np.array([[0.0, 2.0]], np.float32)), alpha=0.5).toarray().tolist()
    [[0.0, 2.0]]
    """
    conf = matrix.copy().astype(np.float32)
    conf.data = (1.0 + alpha * conf.data).astype(np.float32)
    return conf


def _use_gpu(device: str) -> bool:
    import implicit.gpu

    resolved = resolve_device(device)
    if resolved == "cuda" and not implicit.gpu.HAS_CUDA:
        if device == "cuda":
            raise RuntimeError(
                "batch.device = 'cuda' but this implicit build has no CUDA support; "
                "use batch.model = 'torch' for GPU training, or batch.device = 'cpu' / 'auto'"
            )
        log.info("train.implicit_cpu", reason="implicit has no CUDA support; training on the CPU")
        return False
    return resolved == "cuda"


def train_implicit(matrix: sp.csr_matrix, settings: BatchSettings, *, show_progress: bool = True) -> Factors:
    """Fit implicit's ALS (``settings.train.model == "als"``) or BPR (``"bpr"``), seeded with ``settings.seed``.

    ALS is deterministic for a seed on any thread count. BPR's Hogwild updates are deterministic only with
    ``threads = 1``. BPR ignores weights and returns ``factors + 1`` columns, the last one the item bias (users
    carry 1.0 there), so inner products still rank exactly as implicit does.
    """
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking

    use_gpu = _use_gpu(settings.device)
    # implicit runs its own thread pool; a multi-threaded BLAS underneath would fight it.
    with threadpool_limits(1, user_api="blas"):
        if settings.train.model == "als":
            model = AlternatingLeastSquares(
                factors=settings.train.factors,
                regularization=settings.train.effective_regularization,
                alpha=1.0,
                iterations=settings.train.iterations,
                use_gpu=use_gpu,
                num_threads=settings.threads,
                random_state=settings.seed,
            )
            model.fit(als_confidence(matrix, settings.train.alpha), show_progress=show_progress)
        elif settings.train.model == "bpr":
            model = BayesianPersonalizedRanking(
                factors=settings.train.factors,
                learning_rate=settings.train.learning_rate,
                regularization=settings.train.effective_regularization,
                iterations=settings.train.iterations,
                use_gpu=use_gpu,
                num_threads=settings.threads,
                random_state=settings.seed,
            )
            model.fit(matrix, show_progress=show_progress)
        else:
            raise ValueError(f"train_implicit handles batch.model 'als' or 'bpr'; got {settings.train.model!r}")
    if use_gpu:
        model = model.to_cpu()
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    train = settings.train
    exact = train.model == "als"
    terms = solver_terms(items, regularization=train.effective_regularization, alpha=train.alpha, exact=exact)
    return Factors(user_factors=users, item_factors=items, solver=terms, model=settings.train.model)
