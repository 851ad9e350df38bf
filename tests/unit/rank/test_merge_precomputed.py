"""What the single-request merge computes once per snapshot, per trending refresh or per batch row instead of per
list (``SnapshotModel.popular_rank`` and ``neighbours_full``, ``TrendingScores.share``, the finite-row check)
gives the lists computed anew, and follows a snapshot flip, a trending refresh and a catalog change."""

from __future__ import annotations

import gc
from dataclasses import replace

import numpy as np

from lambdarec.model.rows import UserRow
from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.rank.defects import nonfinite_count
from lambdarec.rank.memo import finite_row
from lambdarec.rank.trending import TrendingScores
from tests.factories import snapshot_model

N_ITEMS = 40


def _ids(ranked) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.item_id for r in ranked]


def test_popular_rank_is_popularity_then_index() -> None:
    model = snapshot_model(N_ITEMS)
    popularity = np.array([3, 1, 3, 2, 1, 3] + [0] * (N_ITEMS - 6), dtype=np.float32)
    model = replace(model, popularity_all=popularity)
    expected = sorted(range(N_ITEMS), key=lambda i: (-popularity[i], i))
    assert np.argsort(model.popular_rank).tolist() == expected


def test_equal_scores_follow_the_new_snapshots_popularity_after_a_flip() -> None:
    """Popular fallbacks all score alike: their order is the tie-break, read from each snapshot's own ranks."""
    old = snapshot_model(N_ITEMS)
    flipped = replace(old, version="v2", popularity_all=old.popularity_all[::-1].copy())  # i39 now most popular
    assert _ids(merge(MergeInput(old), MergeWeights(), k=3)) == ["i0", "i1", "i2"]
    assert _ids(merge(MergeInput(flipped), MergeWeights(), k=3)) == ["i39", "i38", "i37"]
    assert _ids(merge(MergeInput(old), MergeWeights(), k=3)) == ["i0", "i1", "i2"]  # the old one's ranks unchanged


def test_trending_component_follows_each_refresh() -> None:
    model = snapshot_model(N_ITEMS)
    weights = MergeWeights(cf=0.0, session=0.0, trending=1.0)
    first = TrendingScores.of(np.where(np.arange(N_ITEMS) == 7, 4.0, 0.0).astype(np.float32))
    refreshed = TrendingScores.of(np.where(np.arange(N_ITEMS) == 9, 2.0, 1.0).astype(np.float32))
    got = merge(MergeInput(model, trending=first), weights, k=1, explain=True)
    assert got[0].item_id == "i7" and got[0].components["trending"] == 1.0
    got = merge(MergeInput(model, trending=refreshed), weights, k=2, explain=True)
    assert _ids(got) == ["i9", "i0"]
    assert [r.components["trending"] for r in got] == [1.0, 0.5]
    assert refreshed.share.tolist() == (refreshed.scores / 2.0).tolist()
    assert TrendingScores.of(np.zeros(N_ITEMS, dtype=np.float32)).share.tolist() == [0.0] * N_ITEMS


def test_a_catalog_change_is_honoured_at_once() -> None:
    """Eligibility is read per request: an item the rules remove leaves the very next list."""
    model = snapshot_model(N_ITEMS)
    inp = MergeInput(model, session=[("i7", 100.0)], now_s=100.0)
    first = _ids(merge(inp, MergeWeights(), k=5))
    eligible = np.ones(N_ITEMS, dtype=bool)
    eligible[[model.item_index[i] for i in first[:2]]] = False
    after = _ids(merge(replace(inp, eligible=eligible), MergeWeights(), k=5))
    assert not set(first[:2]) & set(after)
    assert _ids(merge(inp, MergeWeights(), k=5)) == first


def test_short_neighbour_rows_never_bring_the_last_item() -> None:
    """A snapshot whose items have fewer neighbours than the table's width (-1 padding) takes the masked path:
    -1 is not read as an index (the last item)."""
    model = snapshot_model(N_ITEMS, neighbours=5)
    assert model.neighbours_full
    short = model.neighbours.copy()
    short[7, 2:] = -1  # i7 has two neighbours
    model = replace(model, neighbours=short)
    assert not model.neighbours_full
    got = merge(MergeInput(model, session=[("i7", 100.0)], now_s=100.0), MergeWeights(), k=N_ITEMS)
    session = {r.item_id for r in got if r.source == "session"}
    assert session == {f"i{i}" for i in short[7, :2]}
    assert f"i{N_ITEMS - 1}" not in session


def test_a_row_found_finite_is_remembered_only_while_it_lives() -> None:
    good = UserRow("u", np.array([1, 2], np.int32), np.array([1.0, 0.5], np.float32), np.array([], np.int32),
                   np.array([], np.float32))  # fmt: skip
    assert finite_row(good) is good and finite_row(good) is good
    del good
    gc.collect()
    before = nonfinite_count("merge")
    for _ in range(2):  # a new row (whatever address it gets) is checked, and its defect counted, at every call
        bad = UserRow("u", np.array([1, 2], np.int32), np.array([np.nan, 0.5], np.float32), np.array([], np.int32),
                      np.array([], np.float32))  # fmt: skip
        checked = finite_row(bad)
        assert checked is not bad and np.isnan(checked.scores[0])
    assert nonfinite_count("merge") == before + 2
