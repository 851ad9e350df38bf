"""Hypothesis strategies for catalogs, global rules and request filters over items i0..i{n-1}."""

from __future__ import annotations

from hypothesis import strategies as st

from lambdarec.catalog.filters import parse_filter
from lambdarec.catalog.item import Item
from lambdarec.catalog.rules import CatalogRules, RequestFilters

NOW = 1_000_000.0
CATEGORIES = ("shoes", "hats", "sale", "adult")
BRANDS = ("acme", "globex", "initech")
FILTERS = ("", "brand=acme", "brand!=globex", "price<=50", "price=20..60;brand=acme,initech", "price>80", "stock=0")


@st.composite
def items(draw: st.DrawFn, item_id: str) -> Item:
    attributes: dict[str, str | float] = {}
    if draw(st.booleans()):
        attributes["brand"] = draw(st.sampled_from(BRANDS))
    if draw(st.booleans()):
        attributes["price"] = draw(st.integers(0, 100))
    if draw(st.booleans()):
        attributes["stock"] = draw(st.integers(0, 2))
    expiry = draw(st.sampled_from([None, NOW - 10.0, NOW + 10.0]))
    return Item(
        item_id=item_id,
        available=draw(st.booleans()),
        categories=tuple(draw(st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True))),
        attributes=attributes,
        expires_at=expiry,
    )


@st.composite
def catalogs(draw: st.DrawFn, n_items: int) -> dict[str, Item]:
    listed = draw(st.lists(st.integers(0, n_items - 1), unique=True, max_size=n_items))
    return {f"i{i}": draw(items(f"i{i}")) for i in listed}


@st.composite
def rules(draw: st.DrawFn) -> CatalogRules:
    never = draw(st.lists(st.sampled_from(CATEGORIES), max_size=1))
    return CatalogRules.of(never, draw(st.sampled_from(FILTERS)), draw(st.booleans()))


@st.composite
def request_filters(draw: st.DrawFn) -> RequestFilters:
    text = draw(st.sampled_from(FILTERS))
    return RequestFilters(
        frozenset(draw(st.lists(st.sampled_from(CATEGORIES), max_size=2))),
        frozenset(draw(st.lists(st.sampled_from(CATEGORIES), max_size=1))),
        parse_filter(text) if text else None,
    )
