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


def test_fold_in_segments_equals_fold_in_for_mixed_lengths() -> None:
    """Users of very different lengths (none, one, long ones) laid end to end each get their own vector."""
    from lambdarec.model.foldin import fold_in_many, fold_in_segments

    rng = np.random.default_rng(7)
    y = rng.normal(size=(500, 16)).astype(np.float32)
    yty = y.astype(np.float64).T @ y
    lengths = [0, 1, 2, 3, 8, 9, 70, 300, 0, 5]
    problems = [(rng.choice(500, n, replace=False), confidence(rng.uniform(0.1, 3.0, n), 2.0)) for n in lengths]
    one = np.stack([fold_in(y, yty, i, c, regularization=0.5) for i, c in problems])
    np.testing.assert_allclose(fold_in_many(y, yty, problems, 0.5), one, atol=1e-5)
    flat_i = np.concatenate([i for i, _ in problems])
    flat_c = np.concatenate([c for _, c in problems])
    np.testing.assert_allclose(fold_in_segments(y, yty, flat_i, flat_c, np.array(lengths), 0.5), one, atol=1e-5)
    assert not fold_in_many(y, yty, problems, 0.5)[0].any()


def test_solve_many_equals_solve_per_user_and_refuses_rows_outside_the_catalogue() -> None:
    """The speed layer's batched solve gives every user the vector a solve of that user alone gives (fresh
    events on items of the batch history add up with them), and a batch row naming an item the snapshot lacks
    is refused instead of spilling into another user's problem."""
    from types import SimpleNamespace

    from lambdarec.model.freshstate import solve, solve_many
    from lambdarec.model.rows import FreshUser, UserRow

    rng = np.random.default_rng(3)
    y = rng.normal(size=(50, 8)).astype(np.float32)
    ids = [f"i{k}" for k in range(50)]
    model = SimpleNamespace(
        version="v1", item_ids=ids, item_index={x: k for k, x in enumerate(ids)}, item_factors=y,
        yty=y.astype(np.float64).T @ y, solver={"alpha": 2.0, "regularization": 0.3}, log_positions={},
        built_at_s=0.0, cutoff_s=0.0,
    )  # fmt: skip

    def row(user: str, items: list[int]) -> UserRow:
        h = np.array(items, dtype=np.int32)
        return UserRow(user_id=user, candidates=np.zeros(0, np.int32), scores=np.zeros(0, np.float32),
                       history=h, history_weights=np.ones(h.size, np.float32))  # fmt: skip

    states = [
        FreshUser(
            user_id="a",
            events=[("i1", 5.0, 1.0), ("i1", 6.0, 2.0), ("i7", 7.0, 1.0)],
            event_positions=[(0, 1), (0, 2), (0, 3)],
        ),
        FreshUser(user_id="b"),
        FreshUser(user_id="c", events=[("i49", 5.0, 3.0), ("unknown", 5.0, 1.0)], event_positions=[(0, 4), (0, 5)]),
    ]
    histories = [row("a", [1, 2, 3]), None, row("c", [0])]
    many = solve_many(states, model, histories)
    yty = model.yty
    expect_a = fold_in(y, yty, [1, 2, 3, 7], confidence([4.0, 1.0, 1.0, 1.0], 2.0), regularization=0.3)
    expect_c = fold_in(y, yty, [0, 49], confidence([1.0, 3.0], 2.0), regularization=0.3)
    np.testing.assert_allclose(many[0].vector, expect_a, atol=1e-6)
    np.testing.assert_allclose(many[2].vector, expect_c, atol=1e-6)
    assert [s.basis for s in many] == ["v1"] * 3 and many[1].vector is None
    np.testing.assert_allclose(solve(states[0], model, histories[0]).vector, expect_a, atol=1e-6)
    with pytest.raises(ValueError, match="user 'c'"):
        solve_many(states, model, [histories[0], None, row("c", [50])])
    with pytest.raises(ValueError, match="user 'a'"):  # the first user whose row is outside is named
        solve_many(states, model, [row("a", [2, -1]), None, row("c", [50])])


def test_fold_in_segments_solves_negative_weights_and_singular_systems_as_fold_in_does() -> None:
    """The Cholesky path takes only confidences >= 1: a negative weight (confidence below 1) gets fold_in's answer,
    and a system that is not positive definite raises as fold_in's LU solve does, never a silent wrong vector."""
    from lambdarec.model.foldin import SPD_MIN_USERS, fold_in_segments

    rng = np.random.default_rng(3)
    y = rng.normal(size=(50, 8)).astype(np.float32)
    yty = y.astype(np.float64).T @ y
    users = SPD_MIN_USERS  # a batch large enough for the Cholesky path, were every confidence >= 1
    idx = np.tile([1, 4, 9, 2, 7], users)
    conf = np.tile([3.0, 0.4, 1.5, 2.0, 1.0], users)
    want = np.stack([fold_in(y, yty, idx[k : k + 5], conf[k : k + 5], 0.5) for k in range(0, idx.size, 5)])
    np.testing.assert_allclose(fold_in_segments(y, yty, idx, conf, np.full(users, 5), 0.5), want, atol=1e-5)
    flat = np.zeros_like(y)
    flat[:, 0] = 1.0  # rank one: with no regularisation Y^T Y + ... is singular
    with pytest.raises(np.linalg.LinAlgError):
        fold_in(flat, flat.T @ flat, [0, 1], [2.0, 2.0], regularization=0.0)
    with pytest.raises(np.linalg.LinAlgError):
        fold_in_segments(flat, flat.T @ flat, np.tile([0, 1], users), np.full(2 * users, 2.0), np.full(users, 2), 0.0)


def test_a_batch_of_confidences_all_at_least_one_takes_the_cholesky_path_with_fold_ins_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lambdarec.model import foldin
    from lambdarec.model.foldin import SPD_MIN_USERS, fold_in_segments

    rng = np.random.default_rng(4)
    y = rng.normal(size=(60, 8)).astype(np.float32)
    yty = y.astype(np.float64).T @ y
    users = SPD_MIN_USERS
    idx = rng.integers(0, 60, size=6 * users)
    conf = 1.0 + rng.random(6 * users) * 3.0
    want = np.stack([fold_in(y, yty, idx[k : k + 6], conf[k : k + 6], 0.5) for k in range(0, idx.size, 6)])
    taken = []
    spd = foldin._fold_in_spd
    monkeypatch.setattr(foldin, "_fold_in_spd", lambda *a: taken.append(1) or spd(*a))
    np.testing.assert_allclose(fold_in_segments(y, yty, idx, conf, np.full(users, 6), 0.5), want, atol=1e-5)
    assert taken == [1], "every confidence >= 1 and enough users: the Cholesky path"
    fold_in_segments(y, yty, idx[:6], conf[:6], np.array([6]), 0.5)
    assert taken == [1], "one user (serving's re-solve): the LU path, no scipy"
