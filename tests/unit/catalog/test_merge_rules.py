"""The merge under the catalog's rules: for any catalog, rules, filters and user state, no ineligible item is
ever returned, and k items come back whenever k eligible unseen items exist (the pool deepens: speed, neighbours,
trending, then popular, all within the rules)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.catalog.explain import with_rule_components
from lambdarec.catalog.item import Item
from lambdarec.catalog.rules import CatalogRules, RequestFilters
from lambdarec.catalog.view import CatalogView
from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.rank.merge import Ranked
from tests.factories import snapshot_model
from tests.unit.catalog.strategies import NOW, catalogs, request_filters, rules

N = 30
MODEL = snapshot_model(N, 6, neighbours=5)
W = MergeWeights(trending_top_n=5, neighbours_per_seed=3, speed_top_n=5)


def row(cands: list[int], history: list[int]) -> UserRow:
    scores = np.linspace(1.0, 0.5, len(cands)).astype(np.float32)
    return UserRow(
        "u1", np.array(cands, np.int32), scores, np.array(history, np.int32), np.ones(len(history), np.float32)
    )


@st.composite
def states(draw: st.DrawFn) -> dict:
    picks = st.lists(st.integers(0, N - 1), unique=True, max_size=8)
    state: dict = {"session": [(f"i{i}", NOW - 60.0 * j) for j, i in enumerate(draw(picks))]}
    if draw(st.booleans()):
        state["batch_row"] = row(draw(picks), draw(picks))
    if draw(st.booleans()):
        vector = np.random.default_rng(draw(st.integers(0, 9))).normal(size=6).astype(np.float32)
        state["fresh"] = FreshUser(user_id="u1", vector=vector, basis=MODEL.version, recent=[], updated_at=NOW)
    if draw(st.booleans()):
        state["trending"] = np.asarray(draw(st.lists(st.floats(0, 9), min_size=N, max_size=N)), np.float32)
    return state


@settings(max_examples=200, deadline=None)
@given(catalog=catalogs(N), rules_=rules(), filters=request_filters(), state=states(), k=st.integers(1, 12))
def test_never_an_ineligible_item_and_k_whenever_k_eligible_exist(catalog, rules_, filters, state, k) -> None:
    view = CatalogView(catalog, MODEL.item_ids, rules_, NOW)
    eligible = view.mask(filters)
    out = merge(MergeInput(MODEL, eligible=eligible, now_s=NOW, **state), W, k=k, explain=True)
    assert all(view.allows(r.item_id, filters) for r in out)
    seen = {i for i, _ in state["session"]}
    if "batch_row" in state:
        seen |= {f"i{i}" for i in state["batch_row"].history.tolist()}
    available = [i for i in MODEL.item_ids.tolist() if i not in seen and view.allows(i, filters)]
    assert len(out) == min(k, len(available))
    assert len({r.item_id for r in out}) == len(out)


def test_without_rules_the_list_is_unchanged() -> None:
    view = CatalogView({"i3": Item(item_id="i3", categories=("a",))}, MODEL.item_ids, CatalogRules(), NOW)
    inp = MergeInput(MODEL, batch_row=row([5, 6, 7], [1]), session=[("i2", NOW)], now_s=NOW)
    plain = merge(inp, W, k=8)
    assert view.mask(None) is None
    assert (
        merge(MergeInput(MODEL, batch_row=inp.batch_row, session=inp.session, now_s=NOW, eligible=None), W, k=8)
        == plain
    )


def test_filtered_candidates_are_replaced_by_the_next_eligible_ones() -> None:
    catalog = {f"i{i}": Item(item_id=f"i{i}", available=False) for i in (5, 6)}
    view = CatalogView(catalog, MODEL.item_ids, CatalogRules(), NOW)
    out = merge(MergeInput(MODEL, batch_row=row([5, 6, 7, 8], []), eligible=view.mask(None), now_s=NOW), W, k=3)
    names = [r.item_id for r in out]
    assert "i5" not in names and "i6" not in names and names[0] == "i7" and len(names) == 3
    assert [r.source for r in out][:1] == ["batch"]
    only = RequestFilters(categories=frozenset({"nothing-has-this"}))
    assert merge(MergeInput(MODEL, eligible=view.mask(only), now_s=NOW), W, k=3) == []


def test_explain_counts_the_items_each_rule_removed_above_an_item() -> None:
    unfiltered = [Ranked(i, 1.0, "batch") for i in ("a", "b", "c", "d", "e")]
    reasons = {"a": "unavailable", "c": "filter", "d": "unavailable"}
    ranked = [Ranked("b", 1.0, "batch", components={"cf": 1.0}), Ranked("e", 0.5, "batch"), Ranked("z", 0.1, "popular")]
    out = with_rule_components(ranked, unfiltered, reasons.get)
    assert out[0].components == {"cf": 1.0, "rule:unavailable": 1.0}
    assert out[1].components == {"rule:filter": 1.0, "rule:unavailable": 2.0}
    assert out[2].components == {"rule:filter": 1.0, "rule:unavailable": 2.0}  # not in the unfiltered head: all above
    assert with_rule_components([Ranked("a", 1.0, "batch")], unfiltered, reasons.get)[0].components == {}


def test_neighbours_deepen_past_the_ones_the_rules_remove() -> None:
    near = MODEL.neighbours[7].tolist()
    catalog = {f"i{i}": Item(item_id=f"i{i}", available=False) for i in near[:2]}  # of its 5 precomputed
    view = CatalogView(catalog, MODEL.item_ids, CatalogRules(), NOW)
    out = merge(MergeInput(MODEL, session=[("i7", NOW)], eligible=view.mask(None), now_s=NOW), W, k=3)
    assert {r.source for r in out} == {"session"}
    assert {r.item_id for r in out} == {f"i{i}" for i in near[2:5]}  # the next three of i7's neighbours
