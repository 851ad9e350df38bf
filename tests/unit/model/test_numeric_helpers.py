"""The near-tie comparison the suite uses instead of bitwise equality: it accepts rounding, never a real change."""

from __future__ import annotations

import numpy as np
import pytest

from tests.numeric import assert_same_ranking, exact_scores


def test_a_swap_of_near_tied_items_passes_and_a_real_swap_fails() -> None:
    exact = np.array([[3.0, 2.0, 2.0 + 1e-7, 1.0, -np.inf]])
    assert_same_ranking(np.array([[0, 1, 2]]), np.array([[0, 2, 1]]), exact)
    with pytest.raises(AssertionError, match="beyond a near-tie"):
        assert_same_ranking(np.array([[0, 3, 1]]), np.array([[0, 1, 3]]), exact)
    with pytest.raises(AssertionError, match="excluded"):
        assert_same_ranking(np.array([[0, 4]]), np.array([[0, 4]]), exact)
    with pytest.raises(AssertionError, match="padding"):
        assert_same_ranking(np.array([[0, -1]]), np.array([[0, 1]]), exact)
    with pytest.raises(AssertionError, match="twice"):
        assert_same_ranking(np.array([[1, 2, 1]]), np.array([[2, 1, 2]]), exact)


def test_exact_scores_mask_excluded_items() -> None:
    got = exact_scores(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), np.array([[0, 1], [0, 0]]))
    assert got.tolist() == [[1.0, -np.inf], [0.0, 1.0]]
