"""The SQLite store's catalog table, in ``fresh.sqlite`` beside the speed layer's state (small writes, never the
batch layer's large transactions), without expiry. An upsert reads and writes its items in one transaction.

Example
-------
>>> catalog = SQLiteCatalog(Connections(path, settings), settings)      # doctest: +SKIP
>>> catalog.upsert([ItemPatch(item_id="i7", available=False)], now_s=time.time())
1
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from lambdarec.catalog.item import Item, ItemPatch
from lambdarec.settings import StoreSettings
from lambdarec.store.catalog import CHANGES_KEPT_S, decode_item, encode_item, merged
from lambdarec.store.sqlite_files import Connections, select_in

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (ns TEXT, item_id TEXT, data BLOB NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (ns, item_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS catalog_updated ON catalog (ns, updated_at);
"""
UPSERT = "INSERT OR REPLACE INTO catalog (ns, item_id, data, updated_at) VALUES (?, ?, ?, ?)"
SELECT_IN = "SELECT data FROM catalog WHERE ns = ? AND item_id IN ({})"
SELECT_ALL = "SELECT data FROM catalog WHERE ns = ?"
SELECT_SINCE = "SELECT data FROM catalog WHERE ns = ? AND updated_at >= ?"


class SQLiteCatalog:
    """The catalog of one namespace."""

    def __init__(self, files: Connections, settings: StoreSettings):
        self._files = files
        self._ns = settings.namespace
        self._files.db("fresh").executescript(SCHEMA)  # IF NOT EXISTS: safe on every open

    def upsert(self, patches: Sequence[ItemPatch], now_s: float) -> int:
        changes = merged(patches)
        with self._files.write("fresh") as conn:
            stored = {i.item_id: i for i in self._decode(select_in(conn, SELECT_IN, (self._ns,), list(changes)))}
            items = [p.apply(stored.get(item_id), now_s) for item_id, p in changes.items()]
            conn.executemany(UPSERT, ((self._ns, i.item_id, encode_item(i), i.updated_at) for i in items))
        return len(items)

    def read(self, item_ids: Iterable[str] | None) -> dict[str, Item]:
        conn = self._files.db("fresh")
        if item_ids is None:
            return {i.item_id: i for i in self._decode(conn.execute(SELECT_ALL, (self._ns,)))}
        keys = list(dict.fromkeys(item_ids))
        return {i.item_id: i for i in self._decode(select_in(conn, SELECT_IN, (self._ns,), keys))}

    def changes(self, since_s: float) -> dict[str, Item]:
        if since_s < time.time() - CHANGES_KEPT_S:
            raise ValueError(f"catalog changes are kept {CHANGES_KEPT_S:.0f} s; read the whole catalog instead")
        rows = self._files.db("fresh").execute(SELECT_SINCE, (self._ns, since_s))
        return {i.item_id: i for i in self._decode(rows)}

    @staticmethod
    def _decode(rows: Iterable[tuple[bytes]]) -> Iterable[Item]:
        return (decode_item(row[0]) for row in rows)
