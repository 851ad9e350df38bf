"""The catalog over one snapshot's item indices: the eligibility mask of the global rules, built once per catalog
refresh (never per request), and per request the mask of its filters, cached by their text.

Example
-------
>>> view = CatalogView(items, model.item_ids, rules, now_s=time.time())      # doctest: +SKIP
>>> eligible = view.mask(RequestFilters(categories=frozenset({"shoes"})))    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from lambdarec.catalog.filters import Filter
from lambdarec.catalog.item import Item
from lambdarec.catalog.rules import (
    UNLISTED,
    CatalogRules,
    RequestFilters,
    global_reason,
    ineligible_because,
)


class CatalogView:
    """Eligibility over ``item_ids`` (a snapshot's items) for the catalog ``items`` at ``now_s``.

    ``eligible`` is None when every item is eligible (nothing to filter: the merge then does no extra work).
    ``valid_until`` is the next expiry: past it the view must be rebuilt (:meth:`CatalogCache.view` does).
    """

    def __init__(self, items: Mapping[str, Item], item_ids: np.ndarray, rules: CatalogRules, now_s: float,
                 cache_size: int = 256):  # fmt: skip
        self.items, self.rules, self.now_s = items, rules, now_s
        self.n_items = len(item_ids)
        self._cache: OrderedDict[tuple[object, ...], np.ndarray | None] = OrderedDict()
        self._cache_size = cache_size
        self._columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._item_ids, self._position = item_ids, None
        self._lock = threading.Lock()
        found = list(map(items.get, item_ids.tolist()))  # str ids: the snapshot's item_ids are a str array
        listed = [(i, item) for i, item in enumerate(found) if item is not None]
        self.listed_index = np.fromiter((i for i, _ in listed), dtype=np.int64, count=len(listed))
        self.listed = [item for _, item in listed]
        mask = np.full(self.n_items, global_reason(None, rules, now_s) is None)
        allowed = [global_reason(item, rules, now_s) is None for item in self.listed]
        mask[self.listed_index] = np.asarray(allowed, dtype=bool)
        self.eligible: np.ndarray | None = None if mask.all() else mask
        by_category: dict[str, list[int]] = {}
        for i, item in listed:
            for category in item.categories:
                by_category.setdefault(category, []).append(i)
        self._by_category = {c: np.asarray(ix, dtype=np.int64) for c, ix in by_category.items()}
        expiries = [it.expires_at for it in items.values() if it.expires_at is not None and it.expires_at > now_s]
        self.valid_until = min(expiries, default=math.inf)

    def patched(
        self, items: Mapping[str, Item], changed: Iterable[str], index: Mapping[str, int], now_s: float
    ) -> CatalogView:
        """This view after the items ``changed`` (ids, now as in ``items``; ``index`` maps the snapshot's item ids to
        their indices): only what they touch is recomputed and the rest is shared, so a poll that brings a few
        changes costs little however large the catalog. A full build when a change lists a new item of the
        snapshot or changes an item's categories, or when an expiry has passed."""
        changed = [i for i in changed if i in items]
        position = self._positions()
        if now_s >= self.valid_until or any(i not in position and i in index for i in changed):
            return CatalogView(items, self._item_ids, self.rules, now_s, self._cache_size)
        changes = [(position[i], items[i]) for i in changed if i in position]
        if any(self.listed[p].categories != item.categories for p, item in changes):
            return CatalogView(items, self._item_ids, self.rules, now_s, self._cache_size)
        new = copy.copy(self)
        new.items, new.now_s, new.listed = items, now_s, list(self.listed)
        new._cache, new._lock = OrderedDict(), threading.Lock()
        mask = np.ones(self.n_items, dtype=bool) if self.eligible is None else self.eligible.copy()
        for p, item in changes:
            new.listed[p] = item
            mask[self.listed_index[p]] = global_reason(item, self.rules, now_s) is None
        new.eligible = None if mask.all() else mask
        new._columns = {}
        for name, (old_numbers, old_texts) in self._columns.items():
            numbers, texts = old_numbers.copy(), old_texts.copy()
            for p, item in changes:
                v = item.attributes.get(name)
                numbers[p] = v if isinstance(v, int | float) else np.nan
                texts[p] = v if isinstance(v, str) else None
            new._columns[name] = (numbers, texts)
        expiries = [it.expires_at for i in changed if (it := items[i]).expires_at is not None and it.expires_at > now_s]
        new.valid_until = min([self.valid_until, *expiries])
        return new

    def _positions(self) -> dict[str, int]:
        """Item id -> its position among the listed items (built once per view, when first patched)."""
        if self._position is None:
            self._position = {item.item_id: p for p, item in enumerate(self.listed)}
        return self._position

    def mask(self, filters: RequestFilters | None) -> np.ndarray | None:
        """Eligible items of the snapshot for a request with ``filters`` (None: all are); cached by the filters."""
        if filters is None or filters.empty:
            return self.eligible
        key = filters.key
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        found = self._request_mask(filters)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _request_mask(self, filters: RequestFilters) -> np.ndarray:
        mask = np.ones(self.n_items, dtype=bool) if self.eligible is None else self.eligible.copy()
        if filters.categories:
            wanted = np.zeros(self.n_items, dtype=bool)
            for category in filters.categories:
                wanted[self._by_category.get(category, [])] = True
            mask &= wanted
        for category in filters.exclude_categories:
            mask[self._by_category.get(category, [])] = False
        if filters.filter is not None:
            passes = np.full(self.n_items, filters.filter.matches(UNLISTED.attributes))
            passes[self.listed_index] = self._matches(filters.filter)
            mask &= passes
        return mask

    def _matches(self, filter_: Filter) -> np.ndarray:
        """``filter_.matches`` of every listed item, vectorised over columns of the attributes it names (each
        column built once per view): a new filter costs numpy work, not a Python call per item."""
        hits = np.ones(len(self.listed), dtype=bool)
        for clause in filter_.clauses:
            numbers, texts = self._column(clause.name)
            if clause.op in ("=", "!="):
                hit = np.zeros(len(self.listed), dtype=bool)
                for value, text in zip(clause.values, clause.texts, strict=True):
                    hit |= texts == text  # a string attribute equals the value as written
                    if isinstance(value, float):
                        hit |= numbers == value  # a numeric one equals a bare number by value
                hits &= hit if clause.op == "=" else ~hit
            else:
                low, high = clause.values[0], clause.values[-1]
                with np.errstate(invalid="ignore"):  # NaN (missing, or text) compares False: the clause fails
                    hits &= {
                        "..": (numbers >= low) & (numbers <= high),
                        "<": numbers < low,
                        "<=": numbers <= low,
                        ">": numbers > low,
                        ">=": numbers >= low,
                    }[clause.op]
        return hits

    def _column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(numeric values, NaN where missing or text; text values, None where missing or numeric) of ``name``."""
        found = self._columns.get(name)
        if found is None:
            values = [item.attributes.get(name) for item in self.listed]
            numbers = np.array([v if isinstance(v, int | float) else np.nan for v in values], dtype=np.float64)
            texts = np.array([v if isinstance(v, str) else None for v in values], dtype=object)
            found = self._columns[name] = (numbers, texts)
        return found

    def reason(self, item_id: str, filters: RequestFilters | None) -> str | None:
        """Why ``item_id`` may not be shown (a rule's name, see ``rules.GLOBAL_RULES``), or None."""
        item = self.items.get(item_id)
        if filters is None:
            return global_reason(item, self.rules, self.now_s)
        return ineligible_because(item, self.rules, filters, self.now_s)

    def allows(self, item_id: str, filters: RequestFilters | None) -> bool:
        """Whether an item, in the snapshot or not, may be shown (items outside the snapshot: fresh items)."""
        return self.reason(item_id, filters) is None
