"""The Cassandra store's catalog: one row per item, spread over ``CATALOG_BUCKETS`` partitions per namespace so
serving reads the whole catalog in a few concurrent queries, and a change index by minute, so serving's poll
reads only the items upserted since its last one.

An upsert binds only the fields it sets; the others are left unset (``UNSET_VALUE``), so concurrent upserts of
different fields of one item never undo each other, and no read precedes a write.

Example
-------
>>> catalog = CassandraCatalog(cql, settings)                                      # doctest: +SKIP
>>> catalog.upsert([ItemPatch(item_id="i7", available=False)], now_s=time.time())  # doctest: +SKIP
1
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.query import UNSET_VALUE

from lambdarec.catalog.item import Item, ItemPatch
from lambdarec.settings import StoreSettings
from lambdarec.store.cassandra_session import CassandraSession
from lambdarec.store.catalog import CHANGES_KEPT_S, merged

CATALOG_BUCKETS = 16
MINUTE_S = 60
DDL = (
    "CREATE TABLE IF NOT EXISTS {ks}.catalog (ns text, bucket int, item_id text, available boolean, "
    "categories list<text>, attributes text, created_at double, expires_at double, updated_at double, "
    "PRIMARY KEY ((ns, bucket), item_id))",
    # one partition per minute of upserts; rows expire once no poll can ask for them
    "CREATE TABLE IF NOT EXISTS {ks}.catalog_changes (ns text, minute bigint, updated_at double, item_id text, "
    f"PRIMARY KEY ((ns, minute), updated_at, item_id)) WITH default_time_to_live = {int(CHANGES_KEPT_S) * 2}",
)
UPSERT_ITEM = (
    "INSERT INTO {ks}.catalog (ns, bucket, item_id, available, categories, attributes, created_at, expires_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_CHANGE = "INSERT INTO {ks}.catalog_changes (ns, minute, updated_at, item_id) VALUES (?, ?, ?, ?)"
SELECT_BUCKET = (
    "SELECT item_id, available, categories, attributes, created_at, expires_at, updated_at FROM {ks}.catalog "
    "WHERE ns = ? AND bucket = ?"
)
SELECT_ITEM = SELECT_BUCKET + " AND item_id = ?"
SELECT_CHANGES = "SELECT item_id FROM {ks}.catalog_changes WHERE ns = ? AND minute = ? AND updated_at >= ?"


def catalog_bucket(item_id: str) -> int:
    return zlib.crc32(item_id.encode()) % CATALOG_BUCKETS  # crc32, not hash(): the same in every process


def create(session: Any, keyspace: str, timeout_s: float) -> None:
    """Create the catalog tables if absent (``lambdarec store init``)."""
    for ddl in DDL:
        session.execute(ddl.format(ks=keyspace), timeout=timeout_s)


def _row_params(ns: str, patch: ItemPatch, now_s: float) -> tuple[Any, ...]:
    given = patch.given()

    def value(name: str, encode: Any = None) -> Any:
        if name not in given:
            return UNSET_VALUE
        v = given[name]
        return encode(v) if encode is not None and v is not None else v

    return (ns, catalog_bucket(patch.item_id), patch.item_id, value("available"), value("categories", list),
            value("attributes", json.dumps), value("created_at"), value("expires_at"), now_s)  # fmt: skip


def _item(row: tuple[Any, ...]) -> Item:
    item_id, available, categories, attributes, created_at, expires_at, updated_at = row
    return Item(
        item_id=item_id,
        available=True if available is None else available,
        categories=tuple(categories or ()),
        attributes=msgspec.json.decode(attributes) if attributes else {},
        created_at=created_at,
        expires_at=expires_at,
        updated_at=updated_at or 0.0,
    )


class CassandraCatalog:
    """The catalog of one namespace, through the store's session (prepared statements only)."""

    def __init__(self, cql: CassandraSession, settings: StoreSettings):
        self._cql, self._ns = cql, settings.namespace

    def upsert(self, patches: Sequence[ItemPatch], now_s: float) -> int:
        changes = merged(patches)
        minute = math.floor(now_s / MINUTE_S)
        # the change index first: a poll that sees the item row also finds its change
        self._cql.write_many(INSERT_CHANGE, ((self._ns, minute, now_s, item_id) for item_id in changes))
        return self._cql.write_many(UPSERT_ITEM, (_row_params(self._ns, p, now_s) for p in changes.values()))

    def read(self, item_ids: Iterable[str] | None) -> dict[str, Item]:
        if item_ids is None:
            params = [(self._ns, b) for b in range(CATALOG_BUCKETS)]
            results = self._cql.many(SELECT_BUCKET, params, EXEC_PROFILE_DEFAULT)
        else:
            params = [(self._ns, catalog_bucket(i), i) for i in dict.fromkeys(item_ids)]
            results = self._cql.many(SELECT_ITEM, params, EXEC_PROFILE_DEFAULT)
        return {item.item_id: item for rs in results for item in map(_item, rs)}

    def changes(self, since_s: float) -> dict[str, Item]:
        now = time.time()
        if since_s < now - CHANGES_KEPT_S:
            raise ValueError(f"catalog changes are kept {CHANGES_KEPT_S:.0f} s; read the whole catalog instead")
        minutes = range(math.floor(since_s / MINUTE_S), math.floor(now / MINUTE_S) + 2)  # +1: a writer's clock ahead
        results = self._cql.many(SELECT_CHANGES, [(self._ns, m, since_s) for m in minutes], EXEC_PROFILE_DEFAULT)
        changed = {row[0] for rs in results for row in rs}
        items = self.read(changed) if changed else {}
        return {k: v for k, v in items.items() if v.updated_at >= since_s}
