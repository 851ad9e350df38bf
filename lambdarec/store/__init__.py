"""The online store port and its backends, picked by the scheme of ``store.url``.

Modules: :mod:`~lambdarec.store.port` (the ``OnlineStore`` contract), :mod:`~lambdarec.store.coordination`
(event-id claims, locks), :mod:`~lambdarec.store.errors`, :mod:`~lambdarec.store.snapshot_info`,
:mod:`~lambdarec.store.lifecycle` (the rules every backend applies), :mod:`~lambdarec.store.versions` (version
clock, current-pointer cache), :mod:`~lambdarec.store.codec` (bytes, never pickle), one module per backend. The
row types live in :mod:`lambdarec.model.rows`, so the math reads them without importing storage.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from lambdarec.masking import mask_url
from lambdarec.model.rows import FreshUser, ItemRow, TrendingItem, UserRow
from lambdarec.settings import Settings, StoreSettings
from lambdarec.store.errors import (
    BACKEND_FAILURES,
    CorruptRowError,
    SnapshotNotFoundError,
    SnapshotStateError,
    StoreError,
    StoreUnavailableError,
    ValidationFailedError,
)
from lambdarec.store.port import OnlineStore
from lambdarec.store.snapshot_info import SnapshotInfo

__all__ = [
    "BACKEND_FAILURES",
    "CorruptRowError",
    "FreshUser",
    "ItemRow",
    "OnlineStore",
    "SnapshotInfo",
    "SnapshotNotFoundError",
    "SnapshotStateError",
    "StoreError",
    "StoreUnavailableError",
    "TrendingItem",
    "UserRow",
    "ValidationFailedError",
    "open_store",
]


def open_store(settings: Settings | StoreSettings) -> OnlineStore:
    """Open the backend that ``store.url`` names (``sqlite://`` or ``cassandra://``)."""
    cfg = settings.store if isinstance(settings, Settings) else settings
    scheme = urlsplit(cfg.url).scheme
    # A backend is imported when its scheme is used: an embedded deployment never loads cassandra-driver (heavy).
    if scheme == "sqlite":
        from lambdarec.store.sqlite import SQLiteStore

        return SQLiteStore(cfg)
    if scheme == "cassandra":
        from lambdarec.store.cassandra import CassandraStore

        return CassandraStore(cfg)
    raise ValueError(f"store.url {mask_url(cfg.url)!r}: unknown scheme {scheme!r}; expected sqlite or cassandra")
