"""Snapshot versions: the clock that names new ones, and the cache of the current one as this process last read it.

Example
-------
>>> new_version(datetime(2026, 11, 29, tzinfo=UTC))[:19]
'20261129T000000000Z'
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

_last_version_ms = 0
_version_lock = threading.Lock()


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique snapshot version: UTC time to the millisecond plus a random suffix.

    Within one process versions strictly increase, even when two begin in the same millisecond.
    """
    global _last_version_ms  # noqa: PLW0603 - one counter per process is the point
    with _version_lock:
        ms = int((now or datetime.now(UTC)).timestamp() * 1000)
        if now is None:
            ms = _last_version_ms = max(ms, _last_version_ms + 1)
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.strftime("%Y%m%dT%H%M%S") + f"{ms % 1000:03d}Z-{secrets.token_hex(3)}"


class CurrentPointer:
    """The current version as this process last read it, re-read once older than the allowed age."""

    def __init__(self, fetch: Callable[[], str | None], default_max_age_s: float):
        self._fetch = fetch
        self._default = default_max_age_s
        self._seen: tuple[float, str | None] = (-float("inf"), None)

    def get(self, max_age_s: float | None = None) -> str | None:
        max_age = self._default if max_age_s is None else max_age_s
        fetched_at, version = self._seen
        now = time.monotonic()
        if max_age > 0 and now - fetched_at <= max_age:
            return version
        version = self._fetch()
        self._seen = (now, version)
        return version

    def set(self, version: str) -> None:
        """Remember a flip made by this process, so it reads its own write at once."""
        self._seen = (time.monotonic(), version)
