"""Item neighbours (cosine, self excluded, sorted) and popularity over event-time windows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from batch_layer.neighbours import item_neighbours
from batch_layer.popularity import popularity, ranking
from tests.numeric import assert_same_ranking, assert_scores_close

DAY_MS = 86_400_000


def test_neighbours_are_the_most_similar_other_items_by_cosine() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((500, 8)).astype(np.float32) * rng.uniform(0.1, 10, (500, 1)).astype(np.float32)
    nb = item_neighbours(y, 20, block=64, threads=2)
    y64 = y.astype(np.float64)
    unit = y64 / np.linalg.norm(y64, axis=1, keepdims=True)
    cos = unit @ unit.T  # float64: the arbiter of near-ties, which BLAS rounding may order either way
    np.fill_diagonal(cos, -np.inf)
    expected = np.argsort(-cos, axis=1, kind="stable")[:, :20]
    assert nb.items.shape == (500, 20) and nb.items.dtype == np.int32
    assert not (nb.items == np.arange(500)[:, None]).any()
    assert (np.diff(nb.scores, axis=1) <= 0).all()
    assert_same_ranking(nb.items, expected, cos)
    assert_scores_close(nb.scores, np.take_along_axis(cos, expected, 1))


def test_neighbours_pad_small_catalogues_and_reject_bad_m() -> None:
    nb = item_neighbours(np.eye(3, dtype=np.float32), 5)
    assert (nb.items[:, 2:] == -1).all() and np.isneginf(nb.scores[:, 2:]).all()
    with pytest.raises(ValueError, match=r"batch\.neighbours"):
        item_neighbours(np.eye(3, dtype=np.float32), 0)


def test_popularity_windows_use_event_time() -> None:
    end = 100 * DAY_MS
    events = pl.DataFrame(
        {
            "item_index": [0, 0, 1, 2, 2, 3],
            "ts": [end - 30 * DAY_MS, end - 1, end - 8 * DAY_MS, end - 6 * DAY_MS, end, end + DAY_MS],
            "weight": [1.0, 2.0, 4.0, 1.0, 1.0, 9.0],
        },
        schema={"item_index": pl.Int64, "ts": pl.Int64, "weight": pl.Float32},
    )
    p = popularity(events, n_items=5, recent_days=7, as_of_ms=end)
    assert p.all_time.tolist() == [3.0, 4.0, 2.0, 0.0, 0.0]  # the event after as_of is ignored
    assert p.recent.tolist() == [2.0, 0.0, 2.0, 0.0, 0.0]  # item 1 is 8 days old
    assert ranking(p.all_time).tolist() == [1, 0, 2, 3, 4]
    newest = popularity(events, n_items=5, recent_days=1)  # as_of defaults to the newest event
    # the window is (as_of - 1 day, as_of]: the event exactly one day before as_of is out
    assert newest.as_of_ms == end + DAY_MS and newest.recent.tolist() == [0.0, 0.0, 0.0, 9.0, 0.0]


def test_popularity_from_arrays_without_weights_counts_events() -> None:
    p = popularity(item_index=np.array([1, 1, 0]), ts=np.array([1, 2, 3]), n_items=2, recent_days=1)
    assert p.all_time.tolist() == [1.0, 2.0] and p.all_time.dtype == np.float32


def test_popularity_names_bad_input() -> None:
    with pytest.raises(ValueError, match="item_index"):
        popularity(pl.DataFrame({"ts": [1]}), n_items=1, recent_days=1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        popularity(item_index=np.array([2]), ts=np.array([1]), n_items=2, recent_days=1)
    with pytest.raises(ValueError, match="length"):
        popularity(item_index=np.array([0, 1]), ts=np.array([1]), n_items=2, recent_days=1)
