"""Comparisons of ranked lists and float results that hold on any CPU, BLAS kernel, block size and thread count.

A float32 dot product may differ in its last bits with the BLAS kernel (AVX-512, AVX2, SSE, NEON), the blocking
and the number of threads. So tests never compare such scores bitwise: scores with a tolerance, and ranked ids
exactly except where two items' exact scores are within that tolerance (a near-tie rounding may order either way).
"""

from __future__ import annotations

import numpy as np

SCORE_ATOL = 1e-4  # float32 dot products of a few dozen terms err by ~1e-6; near-ties below this may swap
SCORE_RTOL = 1e-5


def exact_scores(queries: np.ndarray, items: np.ndarray, exclude: object = None) -> np.ndarray:
    """``queries @ items.T`` in float64 (the arbiter of near-ties); excluded entries (a CSR or dense mask) -inf."""
    scores = np.asarray(queries, np.float64) @ np.asarray(items, np.float64).T
    if exclude is not None:
        mask = exclude.toarray() != 0 if hasattr(exclude, "toarray") else np.asarray(exclude, bool)
        scores[mask] = -np.inf
    return scores


def assert_same_ranking(
    got: np.ndarray,
    want: np.ndarray,
    exact: np.ndarray,
    *,
    atol: float = SCORE_ATOL,
    rtol: float = SCORE_RTOL,
    err_msg: str = "",
) -> None:
    """Assert two ranked id lists agree up to near-ties.

    Parameters
    ----------
    got, want
        int arrays ``[rows, k]`` (or ``[k]``), best first, ``-1`` padding.
    exact
        float64 scores ``[rows, n_items]`` (or ``[n_items]``); ``-inf`` where an item must never be ranked.

    At every rank both lists name the same item, or two items whose exact scores differ by at most
    ``atol + rtol * |score|``. Padding must match exactly, and no item ranked may have an exact score of -inf.
    """
    got, want = np.atleast_2d(np.asarray(got)), np.atleast_2d(np.asarray(want))
    exact = np.atleast_2d(np.asarray(exact, np.float64))
    assert got.shape == want.shape, f"{err_msg} shapes differ: {got.shape} and {want.shape}"
    np.testing.assert_array_equal(got < 0, want < 0, err_msg=f"{err_msg} padding (-1) differs")
    rows = np.broadcast_to(np.arange(got.shape[0])[:, None], got.shape)
    valid = got >= 0
    a = exact[rows[valid], got[valid]]
    b = exact[rows[valid], want[valid]]
    assert np.isfinite(a).all() and np.isfinite(b).all(), f"{err_msg} an excluded item (score -inf) was ranked"
    far = np.abs(a - b) > atol + rtol * np.abs(b)
    if far.any():
        where = np.argwhere(valid)[np.flatnonzero(far)[:5]]
        detail = [
            f"row {r} rank {j}: {got[r, j]} (exact {exact[r, got[r, j]]:.7g}) vs {want[r, j]} "
            f"(exact {exact[r, want[r, j]]:.7g})"
            for r, j in where
        ]
        raise AssertionError(f"{err_msg} {int(far.sum())} ranks differ beyond a near-tie: " + "; ".join(detail))
    for r in range(got.shape[0]):
        ids = got[r][got[r] >= 0]
        assert len(set(ids.tolist())) == ids.size, f"{err_msg} row {r} ranks an item twice: {ids.tolist()}"


def assert_scores_close(got: np.ndarray, want: np.ndarray, *, err_msg: str = "") -> None:
    """float32 scores equal within the tolerance of a near-tie; -inf padding must match."""
    np.testing.assert_allclose(got, want, rtol=SCORE_RTOL, atol=SCORE_ATOL, err_msg=err_msg)


def assert_factors_close(got: np.ndarray, want: np.ndarray) -> None:
    """Two trainings with one seed agree up to rounding: a BLAS may order a reduction differently from run to run
    (memory alignment, threads), never by more than a few units in the last place after a few iterations."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
