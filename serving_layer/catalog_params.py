"""The request filters as query parameters (``categories``, ``exclude_categories``, ``filter``), their bounds from
``serving.catalog``, and what they make: a :class:`RequestFilters`. A bad ``filter`` is a 422 whose message names
the character at fault and shows it under a caret.

Example
-------
>>> filters_of("shoes,hats", None, "price<=50", settings.serving)       # doctest: +SKIP
RequestFilters(categories=frozenset({'shoes', 'hats'}), ...)
"""

from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator

from lambdarec.catalog.filters import Filter, FilterError, parse_filter
from lambdarec.catalog.rules import RequestFilters
from lambdarec.settings import ServingSettings

FILTER_DOC = (
    "Attribute conditions every item must meet, joined by `;`: `name=v` (`name=a,b` any of), `name!=v`, "
    "`name<n`, `name<=n`, `name>n`, `name>=n`, `name=lo..hi`; e.g. `brand=acme;price<=50`. Values with `;` or `,` "
    "go in double quotes. An item without the attribute fails every condition but `!=`. A bad expression is a "
    "422 naming the character at fault."
)


def parse_categories(raw: str | None, s: ServingSettings) -> frozenset[str] | None:
    """``a,b`` as a set of categories (None when absent or empty); ValueError past the bounds."""
    if raw is None:
        return None
    found = frozenset(p.strip() for p in raw.split(",") if p.strip())
    limit = s.catalog.max_request_categories
    if len(found) > limit:
        raise ValueError(f"{len(found)} categories is more than serving.catalog.max_request_categories ({limit})")
    return found or None


def parse_filter_param(raw: str | None, s: ServingSettings) -> Filter | None:
    """The parsed ``filter`` (None when absent or blank); ValueError pointing at the character at fault."""
    if raw is None or not raw.strip():
        return None
    if len(raw) > s.catalog.max_filter_chars:
        raise ValueError(
            f"is {len(raw)} characters, more than serving.catalog.max_filter_chars ({s.catalog.max_filter_chars})"
        )
    try:
        return parse_filter(raw)
    except FilterError as exc:
        raise ValueError(f"{exc.message} at character {exc.position + 1}:\n{exc.pointer()}") from None


def request_filters(
    categories: frozenset[str] | None, exclude_categories: frozenset[str] | None, filter_: Filter | None
) -> RequestFilters | None:
    """The request's filters, or None when it gave none."""
    if not categories and not exclude_categories and filter_ is None:
        return None
    return RequestFilters(categories or frozenset(), exclude_categories or frozenset(), filter_)


def filters_of(
    categories: str | None, exclude: str | None, filter_: str | None, s: ServingSettings
) -> RequestFilters | None:
    """:func:`request_filters` from the raw texts (ValueError as the parsers raise it)."""
    return request_filters(
        parse_categories(categories, s), parse_categories(exclude, s), parse_filter_param(filter_, s)
    )


def categories_query(s: ServingSettings, name: str, what: str) -> Any:
    def parse(raw: str | None) -> frozenset[str] | None:
        return parse_categories(raw, s)

    doc = (
        f"{what} Comma-separated, at most {s.catalog.max_request_categories} (serving.catalog.max_request_categories)."
    )
    return Annotated[str | None, Query(alias=name, description=doc, examples=["shoes,hats"]), AfterValidator(parse)]


def filter_query(s: ServingSettings) -> Any:
    def parse(raw: str | None) -> Filter | None:
        return parse_filter_param(raw, s)

    doc = f"{FILTER_DOC} At most {s.catalog.max_filter_chars} characters (serving.catalog.max_filter_chars)."
    return Annotated[
        str | None, Query(alias="filter", description=doc, examples=["brand=acme;price<=50"]), AfterValidator(parse)
    ]


class FilterParams:
    """The three query parameters of one router, built once from settings (their bounds are in the OpenAPI)."""

    def __init__(self, s: ServingSettings):
        self.categories = categories_query(s, "categories", "Only items in at least one of these categories.")
        self.exclude = categories_query(s, "exclude_categories", "No item in any of these categories.")
        self.filter = filter_query(s)
