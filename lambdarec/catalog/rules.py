"""Which items may be shown: the global rules (``serving.catalog``) and a request's filters, applied to one item.

An item is shown only when it is available, not expired, in no category of ``never_categories``, matches the
``default_filter``, and matches the request's ``categories`` (any of), ``exclude_categories`` (none of) and
``filter``. An item the catalog does not list is treated as an item with no categories and no attributes, which
is eligible unless ``require_listing`` is set (and unless a filter needs a category or attribute it lacks).

Example
-------
>>> rules = CatalogRules(never_categories=frozenset({"adult"}))
>>> ineligible_because(Item(item_id="i1", available=False), rules, NO_FILTERS, now_s=0.0)
'unavailable'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lambdarec.catalog.filters import Filter, parse_filter
from lambdarec.catalog.item import Item

# The reasons an item is left out, in the order they are checked (explain names the first that applies).
GLOBAL_RULES = ("unlisted", "unavailable", "expired", "never_category", "default_filter")
REQUEST_RULES = ("categories", "exclude_categories", "filter")


@dataclass(frozen=True)
class CatalogRules:
    """The global rules, from ``serving.catalog``."""

    never_categories: frozenset[str] = frozenset()
    default_filter: Filter | None = None
    require_listing: bool = False

    @classmethod
    def of(cls, never_categories: Iterable[str], default_filter: str, require_listing: bool) -> CatalogRules:
        """Rules from the settings' values; a bad ``default_filter`` raises ``FilterError``."""
        parsed = parse_filter(default_filter) if default_filter.strip() else None
        return cls(frozenset(never_categories), parsed, require_listing)


@dataclass(frozen=True)
class RequestFilters:
    """A request's filters: ``categories`` (any of; empty means any), ``exclude_categories``, ``filter``."""

    categories: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    filter: Filter | None = field(default=None)

    @property
    def empty(self) -> bool:
        return not self.categories and not self.exclude_categories and self.filter is None

    @property
    def key(self) -> tuple[frozenset[str], frozenset[str], str]:
        """What a mask over the snapshot's items depends on: the cache key."""
        return self.categories, self.exclude_categories, self.filter.text if self.filter else ""


NO_FILTERS = RequestFilters()
UNLISTED = Item(item_id="")  # what the rules see for an item the catalog does not list


def global_reason(item: Item | None, rules: CatalogRules, now_s: float) -> str | None:
    """The first global rule that leaves ``item`` out (None: the catalog does not list it), or None."""
    if item is None:
        if rules.require_listing:
            return "unlisted"
        item = UNLISTED
    if not item.available:
        return "unavailable"
    if item.expired(now_s):
        return "expired"
    if rules.never_categories and not rules.never_categories.isdisjoint(item.categories):
        return "never_category"
    if rules.default_filter is not None and not rules.default_filter.matches(item.attributes):
        return "default_filter"
    return None


def request_reason(item: Item | None, filters: RequestFilters) -> str | None:
    """The first of the request's filters that leaves ``item`` out, or None (for explain; masks are vectorised)."""
    item = item or UNLISTED
    fails = (
        ("categories", bool(filters.categories) and filters.categories.isdisjoint(item.categories)),
        ("exclude_categories", not filters.exclude_categories.isdisjoint(item.categories)),
        ("filter", filters.filter is not None and not filters.filter.matches(item.attributes)),
    )
    return next((name for name, failed in fails if failed), None)


def ineligible_because(item: Item | None, rules: CatalogRules, filters: RequestFilters, now_s: float) -> str | None:
    """Why ``item`` may not be shown for a request with ``filters``, or None when it may."""
    return global_reason(item, rules, now_s) or request_reason(item, filters)
