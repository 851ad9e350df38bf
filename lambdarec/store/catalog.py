"""The catalog table of the ``OnlineStore``: items as the product knows them, upserted in place (not versioned
with snapshots, no TTL), read whole by serving at start and then by what changed since its last read.

Example
-------
>>> store.upsert_items([ItemPatch(item_id="i7", available=False)], now_s=time.time())   # doctest: +SKIP
1
>>> store.read_catalog(["i7"])["i7"].available                                           # doctest: +SKIP
False
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Protocol

import msgspec

from lambdarec.catalog.item import Item, ItemPatch

CHANGES_KEPT_S = 86400.0  # how far back read_catalog_changes can look; older: read the whole catalog
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Item).decode


def encode_item(item: Item) -> bytes:
    """An item's stored bytes: JSON (never pickle)."""
    return _encode(item)


def decode_item(data: bytes) -> Item:
    return _decode(data)


def merged(patches: Sequence[ItemPatch]) -> dict[str, ItemPatch]:
    """One upsert per item: later patches' fields win, as if applied in order."""
    out: dict[str, ItemPatch] = {}
    for patch in patches:
        before = out.get(patch.item_id)
        out[patch.item_id] = patch if before is None else msgspec.structs.replace(before, **patch.given())
    return out


class CatalogTable(abc.ABC):
    """The catalog's verbs; every ``OnlineStore`` backend has them (contract: ``tests/integration/store``)."""

    @abc.abstractmethod
    def upsert_items(self, patches: Sequence[ItemPatch], now_s: float) -> int:
        """Apply upserts (idempotent: the same patches give the same items), stamped ``updated_at = now_s``.

        Returns how many items were written (an item named twice counts once).
        """

    @abc.abstractmethod
    def read_catalog(self, item_ids: Iterable[str] | None = None) -> dict[str, Item]:
        """Items by id for ``item_ids`` (unknown ones absent); the whole catalog when None."""

    @abc.abstractmethod
    def read_catalog_changes(self, since_s: float) -> dict[str, Item]:
        """Items upserted at or after ``since_s`` (their ``updated_at``). ``since_s`` must lie within
        ``CHANGES_KEPT_S`` of now (``ValueError`` otherwise: read the whole catalog instead)."""


class CatalogRows(Protocol):
    """A backend's catalog table (``sqlite_catalog``, ``cassandra_catalog``)."""

    def upsert(self, patches: Sequence[ItemPatch], now_s: float) -> int: ...
    def read(self, item_ids: Iterable[str] | None) -> dict[str, Item]: ...
    def changes(self, since_s: float) -> dict[str, Item]: ...


class CatalogOf(CatalogTable):
    """The port's catalog verbs on a backend's table, ``self._catalog``: both backends mix this in."""

    _catalog: CatalogRows

    def upsert_items(self, patches: Sequence[ItemPatch], now_s: float) -> int:
        return self._catalog.upsert(patches, now_s)

    def read_catalog(self, item_ids: Iterable[str] | None = None) -> dict[str, Item]:
        return self._catalog.read(item_ids)

    def read_catalog_changes(self, since_s: float) -> dict[str, Item]:
        return self._catalog.changes(since_s)
