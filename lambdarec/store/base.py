"""The ``OnlineStore`` port: the contract between the batch, speed and serving layers.

A snapshot is written under a fresh version while readers keep using the current one; ``publish`` validates it
and flips the current pointer in one write, so a reader sees the old snapshot or the new one, never a mix.
Published snapshots are immutable. Fresh state (speed layer) lives beside snapshots, keyed by user and item.

Example
-------
>>> store = open_store(settings)                     # doctest: +SKIP
>>> v = store.begin_snapshot({"as_of": "2026-11-29T00:00:00Z"})
>>> store.write_array(v, "item_ids", np.array(["a", "b"]))
>>> store.write_users(v, [UserRow("u1", cand, scores, hist, weights)])
>>> store.publish(v, {"counts": {"user_rows": 1, "item_rows": 0}})
>>> store.current_version() == v
True
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import numpy as np

SnapshotState = Literal["writing", "published", "retired"]


class StoreError(RuntimeError):
    """Base of the store's errors."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached; the message names the hosts or path tried."""


class SnapshotNotFoundError(StoreError, KeyError):
    """No snapshot has that version."""


class SnapshotStateError(StoreError):
    """The operation does not fit the snapshot's state (e.g. activating one that was never published)."""


class ValidationFailedError(StoreError):
    """``publish`` found the snapshot incomplete or corrupt; ``problems`` lists what."""

    def __init__(self, version: str, problems: list[str]):
        super().__init__(f"snapshot {version} failed validation: " + "; ".join(problems))
        self.version = version
        self.problems = problems


@dataclass(frozen=True)
class SnapshotInfo:
    """What ``list_snapshots`` and ``get_snapshot`` return."""

    version: str
    state: SnapshotState
    current: bool
    created_at: datetime
    published_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "state": self.state,
            "current": self.current,
            "created_at": self.created_at.isoformat(),
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "meta": self.meta,
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class UserRow:
    """One user's precomputed row in one snapshot. Item references are indices into the ``item_ids`` array."""

    user_id: str
    candidates: np.ndarray  # int32, best first
    scores: np.ndarray  # float32, same length
    history: np.ndarray  # int32, items the user interacted with in the batch window
    history_weights: np.ndarray  # float32, their confidence weights


@dataclass(frozen=True)
class ItemRow:
    """One item's precomputed neighbours in one snapshot."""

    item: int  # index into item_ids
    neighbours: np.ndarray  # int32, most similar first
    scores: np.ndarray  # float32


class FreshUser(msgspec.Struct, kw_only=True):
    """The speed layer's state for one user. Stored as msgpack; fields may be added with defaults."""

    user_id: str
    events: list[tuple[str, float, float]] = []  # (item_id, event time s, weight) since the basis cut-off
    recent: list[tuple[str, float]] = []  # (item_id, event time s), newest last, bounded
    vector: list[float] | None = None  # fold-in vector
    basis: str | None = None  # snapshot version the vector was solved against
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)
    updated_at: float = 0.0  # event time of the newest applied event


class TrendingItem(msgspec.Struct, kw_only=True):
    """Decayed interaction count of one item, in event time."""

    item_id: str
    count: float = 0.0  # decayed to `as_of`
    as_of: float = 0.0  # event time (s) the count refers to
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique snapshot version: UTC time to the millisecond plus a random suffix."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


class OnlineStore(abc.ABC):
    """The port. Backends: ``sqlite`` (embedded default) and ``cassandra``.

    Writes of snapshot data go to versions in state ``writing`` only. ``publish`` validates and flips the
    current pointer atomically. All methods are safe to call from several threads.
    """

    # ---- snapshot lifecycle -------------------------------------------------------------------------------

    @abc.abstractmethod
    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        """Create a new version in state ``writing`` with ``meta`` (JSON-able); return its version."""

    @abc.abstractmethod
    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        """Store a snapshot-level array (item ids, factors, solver terms, popularity...) in <= 1 MiB chunks."""

    @abc.abstractmethod
    def write_users(self, version: str, rows: Iterable[UserRow], part: str | None = None) -> int:
        """Bulk-write per-user rows; return how many. ``part`` names this batch so a retry is not counted twice."""

    @abc.abstractmethod
    def write_items(self, version: str, rows: Iterable[ItemRow], part: str | None = None) -> int:
        """Bulk-write per-item rows; return how many."""

    @abc.abstractmethod
    def validate(self, version: str, expected_users: int, expected_items: int) -> list[str]:
        """Problems that forbid publishing ``version`` (row counts, array checksums); empty when it is whole."""

    @abc.abstractmethod
    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        """Validate against ``manifest["counts"]`` (``user_rows``, ``item_rows``), store the manifest, flip current.

        Raises ``ValidationFailedError`` and leaves the current snapshot as it was when the version is not whole.
        """

    @abc.abstractmethod
    def list_snapshots(self) -> list[SnapshotInfo]:
        """Every known version, newest first."""

    @abc.abstractmethod
    def get_snapshot(self, version: str) -> SnapshotInfo:
        """One version; ``SnapshotNotFoundError`` if unknown."""

    @abc.abstractmethod
    def activate(self, version: str) -> None:
        """Make an already published version current (rollback). Refuses versions never published or retired."""

    @abc.abstractmethod
    def prune(self, keep: int) -> list[str]:
        """Retire published versions beyond the newest ``keep`` (never the current one) and abandoned writes."""

    @abc.abstractmethod
    def current_version(self, max_age_s: float | None = None) -> str | None:
        """The current version, from a cache no older than ``max_age_s`` (default: the store setting)."""

    # ---- snapshot reads -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_array(self, version: str, name: str) -> np.ndarray:
        """A snapshot-level array; ``KeyError`` naming it if absent."""

    @abc.abstractmethod
    def array_names(self, version: str) -> list[str]:
        """Names of the arrays stored for ``version``."""

    @abc.abstractmethod
    def read_users(self, version: str, user_ids: Iterable[str]) -> dict[str, UserRow]:
        """Rows of the given users in ``version``; unknown users are absent from the result."""

    def read_user(self, version: str, user_id: str) -> UserRow | None:
        """One user's row in ``version``, or None."""
        return self.read_users(version, [user_id]).get(user_id)

    @abc.abstractmethod
    def read_items(self, version: str, items: Iterable[int] | None = None) -> dict[int, ItemRow]:
        """Rows of the given item indices in ``version``; all of them when ``items`` is None."""

    # ---- fresh state (speed layer) ------------------------------------------------------------------------

    @abc.abstractmethod
    def write_fresh_users(self, states: Iterable[FreshUser]) -> int:
        """Upsert users' fresh state (with the store's fresh TTL)."""

    @abc.abstractmethod
    def read_fresh_users(self, user_ids: Iterable[str]) -> dict[str, FreshUser]:
        """Fresh state of the given users; absent or expired ones are missing from the result."""

    @abc.abstractmethod
    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        """Upsert items' trending counters (with the store's fresh TTL)."""

    @abc.abstractmethod
    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        """Trending counters of the given items; every live one when ``item_ids`` is None."""

    # ---- coordination -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lock for ``owner`` unless another live owner holds it; it lapses after ``ttl_s``."""

    @abc.abstractmethod
    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` unless the backend answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_fresh(state: FreshUser | TrendingItem) -> bytes:
    return msgspec.msgpack.encode(state)


def decode_fresh_user(data: bytes) -> FreshUser:
    return msgspec.msgpack.decode(data, type=FreshUser)


def decode_trending(data: bytes) -> TrendingItem:
    return msgspec.msgpack.decode(data, type=TrendingItem)
