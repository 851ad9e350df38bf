"""The user x item matrix and the time-based holdout split."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from batch_layer.interactions import CANONICAL_SCHEMA
from batch_layer.matrix import build_matrix, split_holdout


def frame(rows: list[tuple[str, str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame([(u, i, t, w, "view") for u, i, t, w in rows], schema=CANONICAL_SCHEMA, orient="row")


def test_matrix_sums_repeated_pairs_with_sorted_id_maps():
    data = build_matrix(frame([("u2", "b", 1, 1.0), ("u1", "a", 2, 2.0), ("u2", "b", 3, 4.0), ("u10", "a", 4, 0.5)]))

    assert data.user_ids.tolist() == ["u1", "u10", "u2"]
    assert data.item_ids.tolist() == ["a", "b"]
    assert data.user_ids.dtype.kind == "U"
    assert isinstance(data.matrix, sp.csr_matrix)
    assert data.matrix.dtype == np.float32
    assert data.shape == (3, 2)
    dense = data.matrix.toarray()
    assert dense.tolist() == [[2.0, 0.0], [0.5, 0.0], [0.0, 5.0]]
    assert data.matrix.nnz == 3


def test_matrix_does_not_depend_on_row_order():
    rows = [("u2", "b", 1, 1.0), ("u1", "a", 2, 2.0), ("u3", "c", 3, 4.0), ("u1", "c", 4, 1.0)]
    one = build_matrix(frame(rows))
    two = build_matrix(frame(rows[::-1]))
    assert one.user_ids.tolist() == two.user_ids.tolist()
    assert (one.matrix != two.matrix).nnz == 0


def test_matrix_of_nothing_is_empty():
    data = build_matrix(frame([]))
    assert data.shape == (0, 0)
    assert data.matrix.shape == (0, 0)


def test_holdout_takes_the_newest_share_by_time():
    events = frame([(f"u{t % 7}", f"i{t % 5}", t, 1.0) for t in range(100)]).sample(fraction=1.0, shuffle=True, seed=3)

    train, holdout = split_holdout(events, 0.1)

    assert holdout.height == 10
    assert train.height == 90
    assert train["ts"].max() < holdout["ts"].min()
    assert holdout["ts"].min() == 90


def test_holdout_keeps_events_of_the_cut_time_together():
    events = frame([("a", "x", 1, 1.0), ("b", "x", 2, 1.0), ("c", "x", 3, 1.0), ("d", "x", 3, 1.0)])
    train, holdout = split_holdout(events, 0.25)
    assert sorted(holdout["user_id"].to_list()) == ["c", "d"]
    assert train["user_id"].to_list() == ["a", "b"]


def test_holdout_fraction_zero_holds_nothing_and_bad_fractions_are_refused():
    events = frame([("a", "x", 1, 1.0), ("b", "x", 2, 1.0)])
    train, holdout = split_holdout(events, 0.0)
    assert (train.height, holdout.height) == (2, 0)
    assert holdout.schema == events.schema
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        split_holdout(events, 1.0)
