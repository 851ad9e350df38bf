"""The item catalog and the business rules: what an item is (``item``), the request filter expression
(``filters``), which items may be shown (``rules``), the rules over a snapshot's items (``view``), catalog
changes as events in the log (``events``), and upserts (``ingest``). Pure, except ``ingest``'s two writes.
"""

from lambdarec.catalog.filters import Filter, FilterError, parse_filter
from lambdarec.catalog.item import BadItem, Item, ItemBounds, ItemPatch, parse_item
from lambdarec.catalog.rules import NO_FILTERS, CatalogRules, RequestFilters, ineligible_because
from lambdarec.catalog.view import CatalogView

__all__ = [
    "NO_FILTERS",
    "BadItem",
    "CatalogRules",
    "CatalogView",
    "Filter",
    "FilterError",
    "Item",
    "ItemBounds",
    "ItemPatch",
    "RequestFilters",
    "ineligible_because",
    "parse_filter",
    "parse_item",
]
