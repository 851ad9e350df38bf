"""The catalog part of the store contract, run on every backend through :class:`StoreContract`."""

from __future__ import annotations

import threading
import time

import pytest

from lambdarec.catalog.item import ItemPatch
from lambdarec.store import OnlineStore


class CatalogContract:
    """Needs ``make_store()`` and ``namespace`` from :class:`StoreContract`."""

    namespace: str

    def make_store(self, **overrides: object) -> OnlineStore:
        raise NotImplementedError

    def test_upsert_creates_with_defaults_and_reads_back_exactly(self) -> None:
        store = self.make_store()
        now = time.time()
        full = ItemPatch(item_id="i1", available=True, categories=("shoes", "sale"),
                         attributes={"brand": "acme", "price": 49.5, "stock": 3}, created_at=now - 10.0,
                         expires_at=now + 3600.0)  # fmt: skip
        assert store.upsert_items([full, ItemPatch(item_id="i2")], now) == 2
        got = store.read_catalog(["i1", "i2", "nope"])
        assert set(got) == {"i1", "i2"}
        one = got["i1"]
        assert (one.available, one.categories, one.attributes) == (True, ("shoes", "sale"), full.attributes)
        assert one.created_at == pytest.approx(now - 10.0) and one.expires_at == pytest.approx(now + 3600.0)
        assert one.updated_at == pytest.approx(now)
        bare = got["i2"]
        assert (bare.available, bare.categories, bare.attributes, bare.expires_at) == (True, (), {}, None)

    def test_an_upsert_changes_only_the_fields_it_names_and_null_clears_the_expiry(self) -> None:
        store = self.make_store()
        now = time.time()
        store.upsert_items(
            [ItemPatch(item_id="i1", categories=("a",), attributes={"k": "v"}, expires_at=now + 60)], now
        )
        store.upsert_items([ItemPatch(item_id="i1", available=False)], now + 1)
        item = store.read_catalog(["i1"])["i1"]
        assert (item.available, item.categories, item.attributes) == (False, ("a",), {"k": "v"})
        assert item.expires_at == pytest.approx(now + 60)
        store.upsert_items([ItemPatch(item_id="i1", expires_at=None, categories=())], now + 2)
        item = store.read_catalog(["i1"])["i1"]
        assert (item.expires_at, item.categories, item.available) == (None, (), False)

    def test_upserts_are_idempotent(self) -> None:
        store = self.make_store()
        now = time.time()
        patches = [ItemPatch(item_id=f"i{n}", available=n % 2 == 0, categories=(f"c{n % 3}",)) for n in range(50)]
        store.upsert_items(patches, now)
        first = store.read_catalog()
        store.upsert_items(patches, now)
        assert store.read_catalog() == first and len(first) == 50

    def test_the_same_item_twice_in_one_call_applies_in_order(self) -> None:
        store = self.make_store()
        patches = [ItemPatch(item_id="i1", available=False, categories=("x",)), ItemPatch(item_id="i1", available=True)]
        assert store.upsert_items(patches, time.time()) == 1
        item = store.read_catalog(["i1"])["i1"]
        assert (item.available, item.categories) == (True, ("x",))

    def test_changes_since_name_exactly_the_items_upserted_since(self) -> None:
        store = self.make_store()
        t0 = time.time()
        store.upsert_items([ItemPatch(item_id="old")], t0 - 120)
        store.upsert_items([ItemPatch(item_id="new", available=False)], t0)
        changed = store.read_catalog_changes(t0 - 1)
        assert set(changed) == {"new"} and changed["new"].available is False
        assert set(store.read_catalog_changes(t0 - 200)) == {"old", "new"}
        with pytest.raises(ValueError, match="whole catalog"):
            store.read_catalog_changes(t0 - 10 * 86400)

    def test_the_catalog_is_per_namespace_and_survives_reopening(self) -> None:
        store = self.make_store()
        store.upsert_items([ItemPatch(item_id="i1", available=False)], time.time())
        store.close()
        assert self.make_store().read_catalog(["i1"])["i1"].available is False
        self.namespace = f"{self.namespace}x"
        other = self.make_store()
        assert other.read_catalog() == {}

    def test_concurrent_upserts_of_different_items_all_land(self) -> None:
        store = self.make_store()

        def write(n: int) -> None:
            store.upsert_items([ItemPatch(item_id=f"t{n}-{i}", categories=(str(n),)) for i in range(20)], time.time())

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.read_catalog()) == 80
