"""The eligibility mask over a snapshot's items equals the rules applied to each item, for any catalog, rules and
filters; an item outside the catalog follows ``require_listing``; the next expiry is known."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.catalog.filters import parse_filter
from lambdarec.catalog.item import Item
from lambdarec.catalog.rules import NO_FILTERS, CatalogRules, RequestFilters, ineligible_because
from lambdarec.catalog.view import CatalogView
from tests.unit.catalog.strategies import NOW, catalogs, request_filters, rules

IDS = np.array([f"i{i}" for i in range(12)])


@settings(max_examples=150, deadline=None)
@given(catalog=catalogs(12), rules_=rules(), filters=request_filters())
def test_the_mask_is_the_rules_applied_to_every_item(catalog, rules_, filters) -> None:
    view = CatalogView(catalog, IDS, rules_, NOW)
    want = np.array([ineligible_because(catalog.get(i), rules_, filters, NOW) is None for i in IDS.tolist()])
    got = view.mask(filters)
    assert np.array_equal(np.ones(len(IDS), bool) if got is None else got, want)
    assert view.mask(filters) is got  # cached by the filters
    for item_id in IDS.tolist():
        assert view.allows(item_id, filters) is bool(want[int(item_id[1:])])


def test_nothing_to_filter_gives_no_mask() -> None:
    view = CatalogView({"i1": Item(item_id="i1", categories=("a",))}, IDS, CatalogRules(), NOW)
    assert view.eligible is None and view.mask(NO_FILTERS) is None


def test_unlisted_items_are_eligible_unless_listing_is_required() -> None:
    catalog = {"i1": Item(item_id="i1")}
    assert CatalogView(catalog, IDS, CatalogRules(), NOW).allows("i5", None)
    strict = CatalogView(catalog, IDS, CatalogRules(require_listing=True), NOW)
    assert strict.reason("i5", None) == "unlisted" and strict.allows("i1", None)
    assert strict.eligible is not None and strict.eligible.tolist() == [i == 1 for i in range(12)]


def test_reasons_are_named_and_the_next_expiry_is_known() -> None:
    catalog = {
        "i0": Item(item_id="i0", available=False),
        "i1": Item(item_id="i1", expires_at=NOW - 1),
        "i2": Item(item_id="i2", categories=("adult",)),
        "i3": Item(item_id="i3", attributes={"region": "us"}, expires_at=NOW + 30),
        "i4": Item(item_id="i4", attributes={"region": "eu"}, categories=("shoes",), expires_at=NOW + 60),
    }
    rules_ = CatalogRules(frozenset({"adult"}), parse_filter("region=eu"))
    view = CatalogView(catalog, IDS, rules_, NOW)
    assert [view.reason(f"i{i}", None) for i in range(5)] == [
        "unavailable", "expired", "never_category", "default_filter", None,
    ]  # fmt: skip
    assert view.valid_until == NOW + 30
    only_hats = RequestFilters(categories=frozenset({"hats"}))
    assert view.reason("i4", only_hats) == "categories"
    assert view.reason("i4", RequestFilters(exclude_categories=frozenset({"shoes"}))) == "exclude_categories"
    assert view.reason("i4", RequestFilters(filter=parse_filter("price<5"))) == "filter"


def test_the_mask_cache_is_bounded() -> None:
    view = CatalogView({}, IDS, CatalogRules(), NOW, cache_size=2)
    for text in ("a=1", "a=2", "a=3"):
        view.mask(RequestFilters(filter=parse_filter(text)))
    assert len(view._cache) == 2


@settings(max_examples=150, deadline=None)
@given(
    before=catalogs(12),
    after=catalogs(12),
    extra=st.booleans(),
    rules_=rules(),
    filters=st.lists(request_filters(), min_size=1, max_size=3),
)
def test_a_patched_view_equals_a_fresh_build(before, after, extra, rules_, filters) -> None:
    """Changes applied to a view (masks and attribute columns already built) give the masks of a fresh build."""
    old = CatalogView(before, IDS, rules_, NOW)
    for f in filters:
        old.mask(f)  # builds columns the patch must carry over
    items = {**before, **after} | ({"elsewhere": Item(item_id="elsewhere")} if extra else {})
    index = {item_id: i for i, item_id in enumerate(IDS.tolist())}
    patched = old.patched(items, [*after, *(["elsewhere"] if extra else [])], index, NOW)
    fresh = CatalogView(items, IDS, rules_, NOW)
    for f in [NO_FILTERS, *filters]:
        got, want = patched.mask(f), fresh.mask(f)
        assert (got is None and want is None) or np.array_equal(got, want), f
    assert patched.valid_until <= fresh.valid_until
