"""The online store port and its backends, picked by the scheme of ``store.url``."""

from __future__ import annotations

from urllib.parse import urlsplit

from lambdarec.masking import mask_url
from lambdarec.settings import Settings, StoreSettings
from lambdarec.store.base import (
    FreshUser,
    ItemRow,
    OnlineStore,
    SnapshotInfo,
    SnapshotNotFoundError,
    SnapshotStateError,
    StoreError,
    StoreUnavailableError,
    TrendingItem,
    UserRow,
    ValidationFailedError,
)

__all__ = [
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
    if scheme == "sqlite":
        from lambdarec.store.sqlite import SQLiteStore

        return SQLiteStore(cfg)
    if scheme == "cassandra":
        from lambdarec.store.cassandra import CassandraStore

        return CassandraStore(cfg)
    raise ValueError(f"store.url {mask_url(cfg.url)!r}: unknown scheme {scheme!r}; expected sqlite or cassandra")
