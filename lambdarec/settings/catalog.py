"""``[serving.catalog]``: the item catalog's bounds and the global business rules."""

from __future__ import annotations

from pydantic import Field, field_validator

from lambdarec.catalog.filters import FilterError, parse_filter
from lambdarec.settings.section import Section


class CatalogSettings(Section):
    """Which items may ever be shown, and the bounds on item objects (``POST /v1/items``, ``items import``)."""

    never_categories: list[str] = Field(
        default_factory=list, description="Items in any of these categories are never returned by any endpoint."
    )
    default_filter: str = Field(
        "",
        description="A filter expression every item must match, besides the request's own `filter` (same "
        "grammar, e.g. `region=eu;age_rating<=12`); empty for none.",
    )
    require_listing: bool = Field(
        False,
        description="Only items the catalog lists may be returned. Off: an item the catalog does not list is "
        "eligible, as an item with no categories and no attributes (so a nightly from a log with items the "
        "catalog never heard of still serves them).",
    )
    max_categories: int = Field(50, ge=1, description="Most categories one item may have.")
    max_attributes: int = Field(100, ge=1, description="Most attributes one item may have.")
    max_value_chars: int = Field(1024, ge=1, description="Longest category, attribute name or string attribute value.")
    max_filter_chars: int = Field(1024, ge=1, description="Longest `filter` a request may give.")
    max_request_categories: int = Field(
        100, ge=1, description="Most categories in a request's `categories` or `exclude_categories`."
    )
    mask_cache_size: int = Field(
        256,
        ge=1,
        description="Distinct request filters whose eligibility masks are kept per catalog refresh (least "
        "recently used dropped first); each holds one byte per item of the snapshot.",
    )

    @field_validator("default_filter")
    @classmethod
    def _parses(cls, text: str) -> str:
        if text.strip():
            try:
                parse_filter(text)
            except FilterError as exc:
                raise ValueError(f"not a filter expression: {exc}") from None
        return text
