"""Negative feedback and fatigue in the merge: hidden and disliked items never come back, a dislike demotes its
neighbours, an item shown often without a click is demoted, and explain says which did it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.rank.feedback import DemoteSettings, demote
from lambdarec.settings import ServingSettings
from tests.factories import snapshot_model

N_ITEMS = 40
MODEL = snapshot_model(N_ITEMS, 8)
NOW = 1_764_400_000.0


def row(cands: list[int]) -> UserRow:
    scores = np.linspace(1.0, 0.5, len(cands)).astype(np.float32)
    return UserRow("u1", np.array(cands, np.int32), scores, np.array([], np.int32), np.array([], np.float32))


def ids(ranked) -> list[str]:
    return [r.item_id for r in ranked]


def test_hidden_and_disliked_items_are_never_returned_from_any_source() -> None:
    fresh = FreshUser(user_id="u1", hidden={"i0": NOW, "i5": NOW}, disliked={"i1": NOW})
    for inp in (
        MergeInput(MODEL, fresh=fresh, now_s=NOW),  # popular fallback
        MergeInput(MODEL, batch_row=row([0, 1, 5, 7]), fresh=fresh, now_s=NOW),  # batch candidates
        MergeInput(MODEL, fresh=fresh, session=[("i2", NOW)], now_s=NOW),  # session neighbours
        MergeInput(MODEL, fresh=fresh, trending=np.arange(N_ITEMS, 0, -1).astype(np.float32), now_s=NOW),
    ):
        out = ids(merge(inp, MergeWeights(), k=N_ITEMS))
        assert not {"i0", "i1", "i5"} & set(out)
        assert len(out) == N_ITEMS - 3 - len(inp.session)  # everything else still comes back: k is kept


def test_a_dislike_demotes_its_nearest_neighbours_by_the_factor_and_explain_names_it() -> None:
    disliked = 3
    near = [int(i) for i in MODEL.neighbours[disliked, :2]]
    others = [i for i in range(N_ITEMS) if i not in near and i != disliked][:6]
    cands = near + others  # the neighbours are the batch's best two
    weights = MergeWeights(demote=DemoteSettings(dislike_neighbour_factor=0.25, dislike_neighbours=2))
    plain = merge(MergeInput(MODEL, batch_row=row(cands), now_s=NOW), weights, k=8, explain=True)
    assert ids(plain)[:2] == [f"i{near[0]}", f"i{near[1]}"]
    fresh = FreshUser(user_id="u1", disliked={f"i{disliked}": NOW - 5})
    out = merge(MergeInput(MODEL, batch_row=row(cands), fresh=fresh, now_s=NOW), weights, k=8, explain=True)
    by_id = {r.item_id: r for r in out}
    before = {r.item_id: r.score for r in plain}
    for i in near:
        item = by_id[f"i{i}"]
        assert item.score == pytest.approx(before[item.item_id] * 0.25, rel=1e-5)
        assert item.components["dislike"] == 0.25 and item.components["fatigue"] == 1.0
        assert f"similar to i{disliked}, which you disliked" in item.reason
    assert not {f"i{i}" for i in near} & set(ids(out)[:4])  # the best two fell out of the top 4
    assert all(r.components["dislike"] == 1.0 for r in out if int(r.item_id[1:]) not in near)


def test_an_item_shown_often_without_a_click_is_fatigued_until_the_impressions_age_out() -> None:
    cands = [4, 9, 11, 12, 13, 14]  # cf after min-max scaling: 1, .8, .6, .4, .2, 0
    shown = {"i4": [NOW - 100.0 * n for n in range(5)], "i9": [NOW - 10.0, NOW - 20.0]}  # i9 only twice
    fresh = FreshUser(user_id="u1", shown=shown)
    weights = MergeWeights(demote=DemoteSettings(fatigue_after=5, fatigue_window_s=3600.0, fatigue_factor=0.1))
    out = merge(MergeInput(MODEL, batch_row=row(cands), fresh=fresh, now_s=NOW), weights, k=6, explain=True)
    assert ids(out) == ["i9", "i11", "i12", "i13", "i4", "i14"]  # i4: 1 x 0.1
    fatigued = out[4]
    assert fatigued.components["fatigue"] == pytest.approx(0.1) and "shown 5 times without a click" in fatigued.reason
    # an hour later the oldest impression left the window: four are fewer than `after`, the demotion is gone
    later = merge(MergeInput(MODEL, batch_row=row(cands), fresh=fresh, now_s=NOW + 3300.0), weights, k=6)
    assert ids(later) == [f"i{i}" for i in cands]


def test_a_negative_score_is_demoted_further_down_not_up() -> None:
    total = np.array([0.8, -0.4, 0.2], np.float32)
    fresh = FreshUser(user_id="u1", shown={"i1": [NOW] * 5, "i0": [NOW] * 5})
    out, why = demote(MODEL, fresh, np.array([0, 1, 2]), total, DemoteSettings(fatigue_factor=0.5), now_s=NOW)
    np.testing.assert_allclose(out, [0.4, -0.6, 0.2], rtol=1e-6)
    assert why is not None and why.fatigue.tolist() == [0.5, 0.5, 1.0]


def test_the_factors_come_from_settings() -> None:
    s = ServingSettings(dislike_neighbour_factor=0.3, dislike_neighbours=4, fatigue={"after": 2, "factor": 0.7})
    assert MergeWeights.from_settings(s).demote == DemoteSettings(0.3, 4, 2, 86400.0, 0.7)


@settings(max_examples=150, deadline=None)
@given(
    hidden=st.sets(st.integers(0, N_ITEMS - 1), max_size=15),
    disliked=st.sets(st.integers(0, N_ITEMS - 1), max_size=15),
    shown=st.sets(st.integers(0, N_ITEMS - 1), max_size=20),
    cands=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=20),
    session=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=3),
    k=st.integers(1, N_ITEMS),
    offset=st.integers(0, 5),
)
def test_no_hidden_or_disliked_item_ever_comes_back_and_k_items_do_whenever_k_eligible_exist(
    hidden, disliked, shown, cands, session, k, offset
) -> None:
    fresh = FreshUser(
        user_id="u1",
        hidden={f"i{i}": NOW for i in hidden},
        disliked={f"i{i}": NOW for i in disliked},
        shown={f"i{i}": [NOW] * 6 for i in shown},
    )
    inp = MergeInput(
        MODEL,
        batch_row=row(cands) if cands else None,
        fresh=fresh,
        session=[(f"i{i}", NOW) for i in session],
        trending=np.linspace(1, 2, N_ITEMS).astype(np.float32),
        now_s=NOW,
    )
    out = ids(merge(inp, MergeWeights(), k=k, offset=offset))
    banned = {f"i{i}" for i in hidden | disliked | set(session)}
    assert not banned & set(out)
    eligible = N_ITEMS - len(banned)
    assert len(out) == min(k, max(eligible - offset, 0))
    assert len(set(out)) == len(out)


@settings(max_examples=100, deadline=None)
@given(
    hidden=st.sets(st.integers(0, N_ITEMS - 1), max_size=15),
    disliked=st.sets(st.integers(0, N_ITEMS - 1), max_size=15),
    exclude=st.sets(st.integers(0, N_ITEMS - 1), max_size=5),
    session=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=3),
    cands=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=20),
    k=st.integers(1, N_ITEMS),
    explain=st.booleans(),
)
def test_the_request_path_every_user_endpoint_shares_never_returns_hidden_or_disliked_items(
    hidden, disliked, exclude, session, cands, k, explain
) -> None:
    """``serving_layer.recommend.recommend`` answers GET and POST recommendations and ``lambdarec recommend``."""
    from lambdarec.model.rows import UserState
    from serving_layer.recommend import RecommendQuery, recommend

    fresh = FreshUser(
        user_id="u1",
        hidden={f"i{i}": NOW for i in hidden},
        disliked={f"i{i}": NOW for i in disliked},
        basis="v1",
    )
    query = RecommendQuery(
        "u1",
        k=k,
        session_items=tuple(f"i{i}" for i in session),
        exclude=frozenset(f"i{i}" for i in exclude),
        explain=explain,
    )
    state = UserState(row(cands) if cands else None, fresh)
    body, _ = recommend(MODEL, query, state, weights=MergeWeights(), trending=None, now_s=NOW)
    out = [item.item_id for item in body.items]
    banned = {f"i{i}" for i in hidden | disliked | exclude | set(session)}
    assert not banned & set(out)
    assert len(out) == min(k, N_ITEMS - len(banned))
    if explain:
        assert all({"dislike", "fatigue"} <= set(item.components or {}) for item in body.items) or not disliked
