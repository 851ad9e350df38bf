"""The store's errors: one base class, so a caller can tell the store's failures from its own bugs."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any


class StoreError(RuntimeError):
    """Base of the store's errors."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached; the message names the hosts or path tried."""


class SnapshotNotFoundError(StoreError, KeyError):
    """No snapshot has that version."""


class SnapshotStateError(StoreError):
    """The operation does not fit the snapshot's state (e.g. activating one that was never published)."""


class ValidationFailedError(StoreError):
    """``publish`` or ``activate`` found the snapshot incomplete or corrupt; ``problems`` lists what."""

    def __init__(self, version: str, problems: list[str]):
        super().__init__(f"snapshot {version} failed validation: " + "; ".join(problems))
        self.version = version
        self.problems = problems


class CorruptRowError(StoreError, ValueError):
    """A stored row or array does not decode or fails its checksum; the message names what was wrong.

    A read of many rows raises it when any of them is corrupt: ``keys`` names the corrupt rows (user ids or item
    indices) and ``rows`` holds every other row it read, decoded, so one bad row costs only itself.
    """

    def __init__(self, message: str, *, keys: Iterable[Any] = (), rows: Mapping[Any, Any] | None = None):
        super().__init__(message)
        self.keys = list(keys)
        self.rows = dict(rows or {})


# What a failing store raises: the store's own errors, the OS (a file, a socket) and the SQLite driver, which the
# embedded backend lets through on reads. Anything else out of a store call is a bug, not an outage.
BACKEND_FAILURES: tuple[type[BaseException], ...] = (StoreError, OSError, sqlite3.Error)
