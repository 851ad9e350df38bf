"""What training produces: user and item factors, and the solver terms the speed layer folds users in with.

Example
-------
>>> y = np.eye(2, dtype=np.float32)
>>> terms = solver_terms(y, regularization=0.1, alpha=2.0, exact=True)
>>> terms.yty.tolist()
[[1.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Item rows per step when accumulating Y^T Y in float64, so the float64 copy stays small.
_YTY_ROWS = 1 << 16


@dataclass(frozen=True)
class SolverTerms:
    """The terms of the closed-form ALS user solve, see :func:`lambdarec.model.foldin.fold_in`.

    Attributes
    ----------
    yty
        float64 ``[f, f]``: ``Y^T Y`` of the item factors.
    regularization
        The L2 weight ``lambda``.
    alpha
        Confidence scaling: an interaction of weight ``w`` has confidence ``1 + alpha * w``.
    exact
        True when the factors came from ALS, so a fold-in reproduces the trainer's own user solve; False for
        BPR and torch factors, where the fold-in is the ALS projection onto their item space.
    """

    yty: np.ndarray
    regularization: float
    alpha: float
    exact: bool


@dataclass(frozen=True)
class Factors:
    """A trained model: one row of factors per user and per item (dense indices), plus solver terms.

    Attributes
    ----------
    user_factors
        float32 ``[n_users, f]``.
    item_factors
        float32 ``[n_items, f]``. Scores are inner products ``user_factors @ item_factors.T``.
    solver
        :class:`SolverTerms` for the speed layer's fold-in.
    model
        The trainer that produced them: ``"als"``, ``"bpr"`` or ``"torch"``.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    solver: SolverTerms
    model: str

    @property
    def factors(self) -> int:
        """Embedding width ``f`` (BPR's is ``batch.train.factors + 1``: its last column carries the item bias)."""
        return int(self.item_factors.shape[1])


def solver_terms(item_factors: np.ndarray, *, regularization: float, alpha: float, exact: bool) -> SolverTerms:
    """``Y^T Y`` in float64, accumulated in row blocks, with the scalars that complete the fold-in solve.

    Example
    -------
    >>> solver_terms(np.ones((3, 2), np.float32), regularization=0.0, alpha=1.0, exact=False).yty.tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    yty = gram(item_factors, "item_factors")
    return SolverTerms(yty=yty, regularization=float(regularization), alpha=float(alpha), exact=exact)


def gram(factors: np.ndarray, name: str = "factors") -> np.ndarray:
    """``F^T F`` in float64 of a 2-D factor matrix, accumulated in row blocks (``Y^T Y`` of the items for the
    fold-in; ``X^T X`` of the users for brand-new items).

    Example
    -------
    >>> gram(np.ones((3, 2), np.float32)).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    y = np.asarray(factors)
    if y.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, f]; got shape {y.shape}")
    out = np.zeros((y.shape[1], y.shape[1]), dtype=np.float64)
    for start in range(0, y.shape[0], _YTY_ROWS):
        block = y[start : start + _YTY_ROWS].astype(np.float64)
        out += block.T @ block
    return out
