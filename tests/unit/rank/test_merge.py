"""The shared merge + re-rank: pool, seen filtering, fallbacks, provenance, determinism."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank import MergeInput, MergeWeights, merge
from tests.factories import snapshot_model

N_ITEMS, F = 40, 8


def make_model(version: str = "v1", seed: int = 0) -> SnapshotModel:
    return snapshot_model(N_ITEMS, F, version=version, seed=seed)


def batch_row(cands: list[int], history: list[int]) -> UserRow:
    return UserRow(
        "u1",
        np.array(cands, dtype=np.int32),
        np.linspace(1.0, 0.5, len(cands)).astype(np.float32),
        np.array(history, dtype=np.int32),
        np.ones(len(history), dtype=np.float32),
    )


W = MergeWeights()


def ids(ranked) -> list[str]:
    return [r.item_id for r in ranked]


def test_unknown_user_without_session_gets_popular() -> None:
    out = merge(MergeInput(make_model()), W, k=5, explain=True)
    assert ids(out) == ["i0", "i1", "i2", "i3", "i4"]
    assert {r.source for r in out} == {"popular"}
    assert out[0].reason == "popular overall"


def test_unknown_user_with_session_gets_session_neighbours_with_reason() -> None:
    model = make_model()
    out = merge(MergeInput(model, session=[("i7", 100.0)], now_s=100.0), W, k=5, explain=True)
    expected = {f"i{i}" for i in model.neighbours[7, :10]}
    assert set(ids(out)) <= expected
    assert "i7" not in ids(out)
    assert all(r.source == "session" for r in out)
    assert all(r.reason == "because you viewed i7" for r in out)


def test_batch_candidates_in_batch_order_without_history() -> None:
    out = merge(MergeInput(make_model(), batch_row=batch_row([5, 6, 7, 8], [1, 2])), W, k=3)
    assert ids(out) == ["i5", "i6", "i7"]
    assert all(r.source == "batch" for r in out)


def test_seen_and_excluded_items_never_come_back() -> None:
    fresh = FreshUser(user_id="u1", events=[("i6", 2000.0, 1.0)], recent=[("i6", 2000.0)])
    inp = MergeInput(make_model(), batch_row=batch_row([5, 6, 7, 8, 9], [1, 2]), fresh=fresh, exclude=frozenset({"i7"}))
    out = ids(merge(inp, MergeWeights(session=0.0), k=10))
    assert not {"i1", "i2", "i6", "i7"} & set(out)


def test_fresh_vector_from_current_basis_reranks_and_older_basis_is_ignored() -> None:
    model = make_model("v2")
    target = model.item_factors[30] * 10
    fresh = FreshUser(user_id="u1", vector=target.tolist(), basis="v2")
    out = merge(MergeInput(model, batch_row=batch_row([5, 6], []), fresh=fresh), MergeWeights(session=0), k=1)
    assert out[0].item_id == "i30" and out[0].source == "speed"
    stale = FreshUser(user_id="u1", vector=target.tolist(), basis="v1")
    out = merge(MergeInput(model, batch_row=batch_row([5, 6], []), fresh=stale), MergeWeights(session=0), k=1)
    assert out[0].item_id == "i5" and out[0].source == "batch"


def test_fresh_events_older_than_cutoff_do_not_hide_items() -> None:
    # i5 was touched before the snapshot's cut-off: the batch already accounted for it.
    fresh = FreshUser(user_id="u1", events=[("i5", 500.0, 1.0)])
    out = merge(MergeInput(make_model(), batch_row=batch_row([5, 6], []), fresh=fresh), W, k=1)
    assert out[0].item_id == "i5"


def test_trending_pulls_items_in() -> None:
    trending = np.zeros(N_ITEMS, dtype=np.float32)
    trending[33] = 50.0
    out = merge(MergeInput(make_model(), trending=trending), MergeWeights(trending=5.0), k=1)
    assert out[0].item_id == "i33" and out[0].source == "trending"


def test_offset_pages_without_overlap() -> None:
    inp = MergeInput(make_model(), batch_row=batch_row(list(range(10, 30)), [0]))
    first, second = merge(inp, W, k=5, offset=0), merge(inp, W, k=5, offset=5)
    assert ids(first) + ids(second) == ids(merge(inp, W, k=10))


def test_mmr_changes_order_but_keeps_contract() -> None:
    inp = MergeInput(make_model(), session=[("i3", 0.0)], batch_row=batch_row(list(range(10, 30)), [0]))
    plain = ids(merge(inp, W, k=8))
    diverse = ids(merge(inp, MergeWeights(mmr_lambda=0.7), k=8))
    assert len(set(diverse)) == 8 and plain[0] == diverse[0]


@settings(max_examples=150, deadline=None)
@given(
    cands=st.lists(st.integers(0, N_ITEMS - 1), max_size=30, unique=True),
    history=st.lists(st.integers(0, N_ITEMS - 1), max_size=20, unique=True),
    session=st.lists(st.integers(0, N_ITEMS - 1), max_size=5),
    exclude=st.sets(st.integers(0, N_ITEMS - 1), max_size=5),
    k=st.integers(1, 50),
    offset=st.integers(0, 10),
    with_vector=st.booleans(),
    mmr=st.sampled_from([0.0, 0.5]),
)
def test_merge_properties(cands, history, session, exclude, k, offset, with_vector, mmr) -> None:
    model = make_model()
    fresh = None
    if with_vector:
        fresh = FreshUser(user_id="u1", vector=[0.1] * F, basis=model.version, recent=[("i1", 1500.0)])
    inp = MergeInput(
        model,
        batch_row=batch_row(cands, history),
        fresh=fresh,
        session=[(f"i{i}", 1200.0) for i in session],
        exclude=frozenset(f"i{i}" for i in exclude),
        now_s=1300.0,
    )
    weights = MergeWeights(mmr_lambda=mmr)
    out = merge(inp, weights, k=k, offset=offset)
    got = ids(out)
    forbidden = {f"i{i}" for i in [*history, *session, *exclude]} | ({"i1"} if with_vector else set())
    assert len(got) <= k
    assert len(got) == len(set(got))
    assert not forbidden & set(got)
    assert got == ids(merge(inp, weights, k=k, offset=offset))
    available = N_ITEMS - len(forbidden)
    assert len(got) == max(0, min(k, available - offset))
