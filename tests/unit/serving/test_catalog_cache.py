"""The catalog cache: a model is never prepared without the catalog's rules, changes are taken incrementally, and
a view is rebuilt when an expiry passes."""

from __future__ import annotations

import time
from pathlib import Path

from lambdarec.catalog.item import ItemPatch
from lambdarec.settings import ServingSettings, StoreSettings
from lambdarec.store import open_store
from serving_layer.catalog_cache import CatalogCache
from tests.factories import snapshot_model


def test_prepare_reads_the_catalog_first_and_changes_are_applied(tmp_path: Path) -> None:
    model = snapshot_model(10, 4)
    with open_store(StoreSettings(url=f"sqlite:///{tmp_path}/store")) as store:
        now = time.time()
        store.upsert_items(
            [ItemPatch(item_id="i1", available=False), ItemPatch(item_id="i2", expires_at=now + 0.3)], now
        )
        cache = CatalogCache(ServingSettings(), 5.0)
        assert not cache.loaded
        cache.prepare(model, store)
        assert cache.loaded
        view = cache.view_for(model, time.time())
        assert view.eligible is not None and not view.eligible[1] and view.eligible[2]
        assert cache.apply(store.read_catalog_changes(now - 1), False, time.time(), model) == 0  # nothing new
        store.upsert_items([ItemPatch(item_id="i3", available=False)], time.time())
        assert cache.apply(store.read_catalog_changes(now - 1), False, time.time(), model) == 1
        assert not cache.view_for(model, time.time()).eligible[3]
        time.sleep(0.35)
        assert not cache.view_for(model, time.time()).eligible[2]  # expired: rebuilt on the request, not a poll
