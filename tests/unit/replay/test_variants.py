"""Variants: names, ablation switches, and the lists they get through serving's request path."""

from __future__ import annotations

import pytest

from lambdarec.model.freshstate import rebase
from lambdarec.rank.memo import item_indices
from lambdarec.rank.merge import MergeInput, MergeWeights, merge
from lambdarec.store import FreshUser
from replay.variants import KINDS, make_variant, parse_kinds, popular, popular_many, recommend, standard_variants


def test_parse_kinds() -> None:
    assert parse_kinds("all") == list(KINDS)
    assert parse_kinds("lambda, batch,lambda") == ["lambda", "batch"]
    with pytest.raises(ValueError, match="unknown variant"):
        parse_kinds("batch,best")


def test_variants_zero_what_they_do_not_use() -> None:
    w = MergeWeights(cf=1.0, session=0.7, trending=0.2)
    batch, speed, lam = (make_variant(k, w) for k in ("batch", "batch+speed", "lambda"))
    assert (batch.weights.session, batch.weights.trending, batch.fold_in) == (0.0, 0.0, False)
    assert (speed.weights.session, speed.weights.trending, speed.fold_in) == (0.0, 0.0, True)
    assert (lam.weights.session, lam.weights.trending) == (0.7, 0.2)
    ablated = standard_variants(w, ["lambda"], trending=False, session=False, fold_in=False)[0]
    assert (ablated.weights.session, ablated.weights.trending, ablated.fold_in) == (0.0, 0.0, False)


def _state(model, store):
    fresh = FreshUser(user_id="u1", events=[("i2", 2000.0, 1.0)], recent=[("i2", 2000.0)])
    fresh = rebase(fresh, model, store.rows["u1"])  # solved against this snapshot, as the speed layer leaves it
    return {"row": store.rows["u1"], "fresh": fresh, "session": [("i2", 2000.0)], "trending": None, "now_s": 2100.0}


def test_popular_ranks_by_popularity_without_seen_items(model, store) -> None:
    got = recommend(make_variant("popular", MergeWeights()), model, **_state(model, store), k=4)
    assert got == ["i3", "i4", "i5", "i6"]  # i0, i1 in the batch history, i2 fresh


def test_batch_ignores_fresh_state_and_session(model, store) -> None:
    state = _state(model, store)
    got = recommend(make_variant("batch", MergeWeights()), model, **state, k=5)
    direct = merge(
        MergeInput(model, batch_row=state["row"], now_s=2100.0), make_variant("batch", MergeWeights()).weights, 5
    )
    assert got == [r.item_id for r in direct]


def test_lambda_is_the_merge_with_fresh_state_and_session(model, store) -> None:
    state = _state(model, store)
    variant = make_variant("lambda", MergeWeights(session=2.0))
    got = recommend(variant, model, **state, k=5)
    inp = MergeInput(model, batch_row=state["row"], fresh=state["fresh"], session=[("i2", 2100.0)], now_s=2100.0)
    assert got == [r.item_id for r in merge(inp, variant.weights, 5)]
    assert "i2" not in got and not {"i0", "i1"} & set(got)


def test_no_fold_in_drops_only_the_vector(model, store) -> None:
    state = _state(model, store)
    assert state["fresh"].vector is not None
    on = recommend(make_variant("batch+speed", MergeWeights()), model, **state, k=5)
    off = recommend(make_variant("batch+speed", MergeWeights(), fold_in=False), model, **state, k=5)
    no_vector = FreshUser(user_id="u1", events=state["fresh"].events, recent=state["fresh"].recent, basis="v1")
    inp = MergeInput(model, batch_row=state["row"], fresh=no_vector, now_s=2100.0)
    assert off == [r.item_id for r in merge(inp, make_variant("batch+speed", MergeWeights()).weights, 5)]
    assert on != off and "i2" not in off  # still filters the fresh item


def test_every_variant_removes_what_the_user_consumed_after_the_split(model, store) -> None:
    """Fair filtering: the batch list of a known user drops items consumed since the snapshot."""
    state = _state(model, store)
    consumed = frozenset({"i5", "i6", "i3"})  # i5, i6: the batch's own top candidates; i3: the most popular unseen
    for kind in KINDS:
        got = recommend(make_variant(kind, MergeWeights()), model, **state, k=6, exclude=consumed)
        assert len(got) == 6, kind
        assert not consumed & set(got), (kind, got)
        assert not {"i0", "i1"} & set(got), (kind, got)  # the training history stays filtered too


def test_a_cold_users_fallback_drops_what_they_consumed(model) -> None:
    """A user the snapshot does not know gets popular items, minus the items they touched since the split."""
    consumed = frozenset({"i0", "i2"})
    for kind in ("popular", "batch"):
        got = recommend(
            make_variant(kind, MergeWeights()),
            model,
            row=None,
            fresh=None,
            session=[],
            trending=None,
            now_s=2100.0,
            k=3,
            exclude=consumed,
        )
        assert got == ["i1", "i3", "i4"], kind  # i0 and i2 are the most popular but already consumed


def test_popular_of_many_users_is_each_ones_popular_list(model, store) -> None:
    fresh = _state(model, store)["fresh"]
    other = FreshUser(user_id="u2", events=[("i3", 2000.0, 1.0), ("i0", 2001.0, 1.0)], recent=[("i7", 2002.0)])
    users = [
        (store.rows["u1"], fresh, frozenset({"i9", "nope"})),
        (None, None, frozenset()),
        (None, other, frozenset({"i4"})),
        (store.rows["u1"], None, frozenset({"i3", "i5"})),
    ]
    for k in (1, 4, len(model.item_ids) + 5):  # more than the catalogue: every unseen item
        alone = [popular(model, row, f, k, exclude) for row, f, exclude in users]
        indices = [item_indices(model, exclude, lambda e=exclude: e) for _, _, exclude in users]
        assert popular_many(model, [u[0] for u in users], [u[1] for u in users], k, indices) == alone
        assert alone[2][:3] == ["i1", "i2", "i5"][:k]  # i0, i3 fresh events, i4 excluded
