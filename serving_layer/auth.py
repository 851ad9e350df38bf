"""API keys: stored as SHA-256 hex digests in settings, sent as ``Authorization: Bearer KEY`` or ``X-API-Key``.

Two roles: ``ingest`` (post events) and ``admin`` (list and activate snapshots; admin keys may also ingest).
Digests are compared with :func:`hmac.compare_digest` against every configured digest, so the time taken does
not depend on which digest (if any) matched.

Example
-------
>>> hash_key("s3cret")[:16]
'4e738ca5563c06cf'
>>> Keyring(ingest=[hash_key("a")], admin=[]).roles("a")
frozenset({'ingest'})
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Literal

Role = Literal["ingest", "admin"]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key``: what settings store in ``ingest_key_hashes``/``admin_key_hashes``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


class Keyring:
    """The configured key digests per role."""

    def __init__(self, ingest: Iterable[str], admin: Iterable[str]):
        self._admin = [d.lower() for d in admin]
        self._ingest = [d.lower() for d in ingest]

    @property
    def empty(self) -> bool:
        """No key is configured at all: every protected endpoint refuses every request."""
        return not (self._admin or self._ingest)

    def roles(self, key: str) -> frozenset[Role]:
        """The roles ``key`` holds; empty for an unknown key. Admin keys hold ``ingest`` too."""
        digest = hash_key(key)
        is_admin = _matches(digest, self._admin)
        is_ingest = _matches(digest, self._ingest)
        if is_admin:
            return frozenset(("admin", "ingest"))
        return frozenset(("ingest",)) if is_ingest else frozenset()


def _matches(digest: str, allowed: list[str]) -> bool:
    found = False
    for candidate in allowed:  # no early exit: the time does not tell which digest matched
        found |= hmac.compare_digest(digest, candidate)
    return found


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` first, else ``X-API-Key``; None if neither."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None
