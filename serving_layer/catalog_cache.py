"""The catalog in serving's memory, refreshed in the background every ``serving.catalog_poll_s`` (never per
request), and its view over the served snapshot's items: the eligibility mask is built once per refresh that
changed something, per snapshot swap, and when an item's expiry passes.

The first read takes the whole catalog; later ones only the items upserted since the last read (less a margin
for writers whose clocks lag), and the whole catalog again when the last read is older than the store keeps
changes. A failed read keeps the catalog in hand.

Example
-------
>>> cache = CatalogCache(settings.serving)                   # doctest: +SKIP
>>> view = cache.view_for(model, time.time())                # doctest: +SKIP
>>> view.mask(RequestFilters(categories=frozenset({"shoes"})))
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from lambdarec.catalog.item import Item
from lambdarec.catalog.rules import CatalogRules
from lambdarec.catalog.view import CatalogView
from lambdarec.logs import get_logger
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import ServingSettings
from lambdarec.store import OnlineStore
from lambdarec.store.catalog import CHANGES_KEPT_S
from serving_layer.store_gate import StoreGate, StoreUnavailable

log = get_logger(__name__)
CLOCK_MARGIN_S = 30.0  # changes are re-read this far back: a writer's clock may lag serving's


class CatalogCache:
    """The catalog's items, and the view of them over the served snapshot (and one being swapped in)."""

    def __init__(self, s: ServingSettings, read_timeout_s: float):
        c = s.catalog
        self.rules = CatalogRules.of(c.never_categories, c.default_filter, c.require_listing)
        self.poll_s = s.catalog_poll_s
        self.read_timeout_s = read_timeout_s
        self.cache_size = c.mask_cache_size
        self._items: dict[str, Item] = {}
        self._read_at: float | None = None  # serving's clock at the start of the last successful read
        # (version, items): the view of a snapshot, or of one extended with brand-new items (a longer item list)
        self._views: dict[tuple[str, int], CatalogView] = {}
        self._lock = threading.Lock()

    def register(self, registry: CollectorRegistry) -> None:
        """The catalog's gauges in serving's registry: items in hand, and seconds since the last successful read."""
        Gauge("lambdarec_serving_catalog_items", "Items of the catalog in memory.", registry=registry).set_function(
            lambda: len(self._items)
        )
        Gauge(
            "lambdarec_serving_catalog_read_age_seconds",
            "Seconds since the catalog was last read; NaN before the first read.",
            registry=registry,
        ).set_function(lambda: time.time() - self._read_at if self._read_at is not None else math.nan)

    @property
    def loaded(self) -> bool:
        return self._read_at is not None

    def view_for(self, model: SnapshotModel, now_s: float) -> CatalogView:
        """The view over ``model``'s items at ``now_s``: rebuilt here only if an expiry passed since the last one
        (the watcher rebuilds on every change and swap, so a request rarely pays for it)."""
        key = (model.version, len(model.item_ids))
        view = self._views.get(key)
        if view is None or now_s >= view.valid_until:
            with self._lock:
                view = self._views.get(key)
                if view is None or now_s >= view.valid_until:
                    view = self._build(model, now_s)
        return view

    def prepare(self, model: SnapshotModel, store: OnlineStore) -> None:
        """Build the view for ``model`` (in the loading thread, before the model is swapped in), reading the whole
        catalog first if it was never read: no model is served without the catalog's rules."""
        if self._read_at is None:
            started = time.time()
            self.apply(store.read_catalog(None), True, started, None)
        with self._lock:
            self._build(model, time.time())

    def apply(self, items: dict[str, Item], whole: bool, read_at: float, model: SnapshotModel | None) -> int:
        """Take a read's items (the whole catalog, or the changes); update the view when something changed (a few
        changes patch it, see ``CatalogView.patched``). Returns how many items changed. Views keep the dict they
        were built from: it is replaced, never edited."""
        changed = [k for k, v in items.items() if self._items.get(k) != v]
        with self._lock:
            if whole:
                changed += list(self._items.keys() - items.keys())
                self._items = dict(items)
            elif changed:
                self._items = {**self._items, **items}
            self._read_at = read_at
            if model is not None:
                key = (model.version, len(model.item_ids))
                view = self._views.get(key)
                if view is None or (changed and whole):
                    self._build(model, time.time())
                elif changed:
                    self._keep(key, view.patched(self._items, changed, model.item_index, time.time()))
        return len(changed)

    def _build(self, model: SnapshotModel, now_s: float) -> CatalogView:
        view = CatalogView(self._items, model.item_ids, self.rules, now_s, self.cache_size)
        return self._keep((model.version, len(model.item_ids)), view)

    def _keep(self, key: tuple[str, int], view: CatalogView) -> CatalogView:
        """Keep ``view`` and the newest three of other snapshots (the served one, the next, pinned experiment arms);
        a view of the same snapshot with another count of brand-new items is dropped (serving has moved on)."""
        keep = {k: w for k, w in self._views.items() if k[0] != key[0]}
        self._views = dict(list(keep.items())[-3:]) | {key: view}
        return view

    async def refresh(self, store: OnlineStore, gate: StoreGate, model: SnapshotModel | None) -> int:
        """Read what changed (everything, the first time) and take it; returns how many items changed."""
        started = time.time()
        whole = self._read_at is None or started - self._read_at > CHANGES_KEPT_S / 2
        if whole:
            items = await gate.call(store.read_catalog, None, timeout_s=self.read_timeout_s, probe=True)
        else:
            since = self._read_at - CLOCK_MARGIN_S  # type: ignore[operator]
            items = await gate.call(store.read_catalog_changes, since, timeout_s=self.read_timeout_s, probe=True)
        return await asyncio.to_thread(self.apply, items, whole, started, model)

    async def watch(
        self, store_of: Callable[[], OnlineStore], gate: StoreGate, model_of: Callable[[], SnapshotModel | None]
    ) -> None:
        """Refresh every ``poll_s`` until cancelled; ``store_of()``/``model_of()`` give the current ones."""
        while True:
            try:
                changed = await self.refresh(store_of(), gate, model_of())
                if changed:
                    log.info("serving.catalog_refreshed", changed=changed, items=len(self._items))
            except StoreUnavailable:
                pass  # the gate logged it; the catalog in hand keeps serving
            except Exception:  # never let the loop die: the catalog is an input, not a dependency
                log.exception("serving.catalog_refresh_failed")
            await asyncio.sleep(self.poll_s)
