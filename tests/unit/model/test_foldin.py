"""fold_in reproduces implicit's own user solve for a model trained by the batch layer."""

from __future__ import annotations

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares

from batch_layer.train.implicit_mf import als_confidence
from lambdarec.model.factors import solver_terms
from lambdarec.model.foldin import confidence, fold_in


def test_fold_in_equals_implicit_recalculate_user(trained) -> None:
    matrix, settings, factors = trained
    # implicit's recalculate_user solves exactly (Cholesky) whatever use_cg says; its alpha stays 1 as in training.
    model = AlternatingLeastSquares(factors=12, regularization=settings.train.regularization, alpha=1.0, use_cg=False)
    model.user_factors, model.item_factors = factors.user_factors, factors.item_factors
    conf = als_confidence(matrix, settings.train.alpha)
    users = [u for u in range(matrix.shape[0]) if matrix[u].nnz][:25]
    for u in users:
        expected = model.recalculate_user(u, conf[u])
        row = matrix[u]
        got = fold_in(
            factors.item_factors,
            factors.solver.yty,
            row.indices,
            confidence(row.data, settings.train.alpha),
            factors.solver.regularization,
        )
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_fold_in_of_a_user_without_items_is_zero() -> None:
    y = np.ones((3, 2), np.float32)
    assert fold_in(y, y.T @ y, [], [], 0.1).tolist() == [0.0, 0.0]


def test_fold_in_names_bad_inputs() -> None:
    y = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="same length"):
        fold_in(y, np.eye(3), [0, 1], [2.0], 0.1)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fold_in(y, np.eye(3), [3], [2.0], 0.1)
    with pytest.raises(ValueError, match="yty"):
        fold_in(y, np.eye(2), [0], [2.0], 0.1)


def test_solver_terms_accumulate_yty_in_float64(trained) -> None:
    _, settings, factors = trained
    y = factors.item_factors.astype(np.float64)
    np.testing.assert_allclose(factors.solver.yty, y.T @ y, rtol=1e-10)
    assert factors.solver.alpha == settings.train.alpha and factors.solver.exact
    big = solver_terms(np.ones((70_000, 2), np.float32), regularization=0, alpha=1, exact=False)
    assert big.yty.tolist() == [[70_000.0, 70_000.0], [70_000.0, 70_000.0]]


def test_fold_in_many_equals_fold_in_per_user(trained) -> None:
    from lambdarec.model.foldin import fold_in_many

    matrix, settings, factors = trained
    problems = [(matrix[u].indices, confidence(matrix[u].data, settings.train.alpha)) for u in range(40)]
    many = fold_in_many(factors.item_factors, factors.solver.yty, problems, settings.train.regularization)
    one = [fold_in(factors.item_factors, factors.solver.yty, i, c, settings.train.regularization) for i, c in problems]
    np.testing.assert_allclose(many, np.stack(one), atol=1e-5)
    assert fold_in_many(factors.item_factors, factors.solver.yty, [], 0.1).shape == (0, 12)
