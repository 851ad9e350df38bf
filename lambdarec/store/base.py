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
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import numpy as np

# The errors live in lambdarec.store.errors; the backends reach them through this module too.
from lambdarec.store.errors import (  # noqa: F401 - re-exported
    CorruptRowError,
    SnapshotNotFoundError,
    SnapshotStateError,
    StoreError,
    StoreUnavailableError,
    ValidationFailedError,
)

SnapshotState = Literal["writing", "published", "retired"]


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
    top_item: int | None = field(default=None, compare=False)  # largest item index, when read from the store


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
    appended_at: float = 0.0  # log append time (epoch s) of the newest applied event; 0: unknown (older rows)
    # (log partition, offset) of each entry of `events`, same order: a flip drops exactly the entries the new
    # snapshot's log positions cover (older states without it fall back to the snapshot's event-time cut-off)
    event_positions: list[tuple[int, int]] = []
    erased_at: float | None = None  # `forget` time: snapshots built before it must not serve this user's rows


class TrendingItem(msgspec.Struct, kw_only=True):
    """Decayed interaction count of one item, in event time.

    The speed layer keeps one shard per (item, log partition): a partition has one consumer at a time, so no
    two consumers ever read-modify-write the same row. Readers add the shards up. The store keys a row by
    :attr:`key`.
    """

    item_id: str
    partition: int = -1  # the log partition this shard counts; -1 for an unsharded count
    count: float = 0.0  # decayed to `as_of`
    as_of: float = 0.0  # event time (s) the count refers to
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)
    appended_at: float = 0.0  # log append time (epoch s) of the newest applied event; 0: unknown (older rows)

    @property
    def key(self) -> str:
        """The store key: ``item_id``, or ``item_id@partition`` for a shard."""
        return trending_key(self.item_id, self.partition)


LogPosition = tuple[int, int]  # (partition, offset) of a record in the event log


def trending_key(item_id: str, partition: int = -1) -> str:
    """The store key of an item's trending row (see :class:`TrendingItem`)."""
    return item_id if partition < 0 else f"{item_id}@{partition}"


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


class OnlineStore(abc.ABC):
    """The port. Backends: ``sqlite`` (embedded default) and ``cassandra``.

    Writes of snapshot data go to versions in state ``writing`` only. ``publish`` validates and flips the
    current pointer atomically. All methods are safe to call from several threads.
    """

    # ---- snapshot lifecycle -------------------------------------------------------------------------------

    @abc.abstractmethod
    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        """Create a new version in state ``writing``.

        Parameters
        ----------
        meta
            JSON-able facts about the run (data cut-off, settings, code version), shown by ``snapshots show``.

        Returns
        -------
        str
            The new version: sortable by creation time, unique.

        Raises
        ------
        ValueError
            ``meta`` is not JSON-able.
        """

    @abc.abstractmethod
    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        """Store a snapshot-level array (item ids, factors, solver terms, popularity...) in <= 1 MiB chunks.

        Parameters
        ----------
        version
            A version in state ``writing``.
        name
            The array's name; writing the same name again replaces it.
        array
            Any fixed-width dtype (stored as ``.npy`` bytes with a sha256 checksum).

        Raises
        ------
        SnapshotNotFoundError, SnapshotStateError
            ``version`` is unknown, or no longer ``writing`` (published snapshots are immutable).
        TypeError
            ``array`` holds Python objects, which would need pickle.
        """

    @abc.abstractmethod
    def write_users(self, version: str, rows: Iterable[UserRow], part: str | None = None) -> int:
        """Bulk-write per-user rows.

        Parameters
        ----------
        version
            A version in state ``writing``.
        rows
            Any iterable (a generator is fine); a user written twice in one version keeps the last row.
        part
            Names this batch. Writing a part again (a retry) replaces its rows and is counted once by
            ``validate``; different parts must hold different users.

        Returns
        -------
        int
            How many rows this call wrote.

        Raises
        ------
        SnapshotNotFoundError, SnapshotStateError
            As for ``write_array``.
        ValueError
            A row's arrays do not pair up; the message names the user.
        """

    @abc.abstractmethod
    def write_items(self, version: str, rows: Iterable[ItemRow], part: str | None = None) -> int:
        """Bulk-write per-item rows; as ``write_users``, keyed by item index. Returns how many."""

    @abc.abstractmethod
    def validate(self, version: str, expected_users: int, expected_items: int) -> list[str]:
        """Check that ``version`` is whole.

        Parameters
        ----------
        version
            Any known version.
        expected_users, expected_items
            Row counts the writer promises (the manifest's ``counts``).

        Returns
        -------
        list of str
            One line per problem (row count off, array chunk missing or checksum wrong); empty when whole.
        """

    @abc.abstractmethod
    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        """Validate ``version``, store ``manifest`` and make it current in one atomic flip.

        Parameters
        ----------
        version
            A version in state ``writing``.
        manifest
            JSON-able; must hold ``counts`` with integer ``user_rows`` and ``item_rows``; may list ``arrays``
            (names that must have been written).

        Raises
        ------
        ValidationFailedError
            The version is not whole; ``problems`` says why. Current stays as it was; the version stays
            ``writing``.
        SnapshotNotFoundError, SnapshotStateError
            ``version`` is unknown or not ``writing``.
        ValueError
            ``manifest`` lacks the counts or is not JSON-able.
        """

    @abc.abstractmethod
    def list_snapshots(self) -> list[SnapshotInfo]:
        """Every version of this store's namespace, newest first, ``current`` set on at most one."""

    @abc.abstractmethod
    def get_snapshot(self, version: str) -> SnapshotInfo:
        """One version.

        Raises
        ------
        SnapshotNotFoundError
            No snapshot has that version.
        """

    @abc.abstractmethod
    def activate(self, version: str) -> None:
        """Make an already published version current (rollback); readers follow within ``current_cache_s``.

        The version is validated first, as ``publish`` validates (row counts, array checksums, arrays the
        manifest lists); a version that fails is refused and the pointer does not move.

        Raises
        ------
        SnapshotNotFoundError
            No snapshot has that version.
        SnapshotStateError
            The version was never published (state ``writing``), was retired, or its rows have expired.
        ValidationFailedError
            The version's rows or arrays no longer pass validation; ``problems`` says why.
        """

    @abc.abstractmethod
    def prune(self, keep: int) -> list[str]:
        """Retire published versions beyond the newest ``keep`` (never the current one) and abandoned writes.

        Parameters
        ----------
        keep
            Published versions to keep, >= 1 (``store.keep_versions`` is the usual value).

        Returns
        -------
        list of str
            The versions retired by this call, newest first. A ``writing`` version counts as abandoned once
            older than ``store.abandon_after_s``.
        """

    @abc.abstractmethod
    def current_version(self, max_age_s: float | None = None) -> str | None:
        """The current version, or None before the first publish.

        Parameters
        ----------
        max_age_s
            Oldest cached answer acceptable; None means ``store.current_cache_s``; 0 always asks the store.
        """

    # ---- snapshot reads -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_array(self, version: str, name: str) -> np.ndarray:
        """A snapshot-level array; ``KeyError`` naming it if absent."""

    @abc.abstractmethod
    def array_names(self, version: str) -> list[str]:
        """Names of the arrays stored for ``version``."""

    @abc.abstractmethod
    def read_users(self, version: str, user_ids: Iterable[str]) -> dict[str, UserRow]:
        """Rows of many users at once.

        Parameters
        ----------
        version
            Any version (readers pass the one ``current_version`` gave them).
        user_ids
            Users to fetch; duplicates are fine.

        Returns
        -------
        dict
            ``user_id -> UserRow``; unknown users are absent.
        """

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
        """Upsert trending rows under their :attr:`TrendingItem.key` (with the store's fresh TTL)."""

    @abc.abstractmethod
    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        """Trending rows by key (see :func:`trending_key`) for the given keys; every live one when None."""

    # ---- event ids (speed layer: a repeated event_id is applied once) ---------------------------------------

    @abc.abstractmethod
    def claim_event_ids(self, claims: Mapping[str, LogPosition], ttl_s: float) -> dict[str, LogPosition]:
        """Claim each event id for the log position of the record carrying it, unless a live claim holds it.

        Returns, for every id in ``claims``, the position that owns it now: the one given (a new claim, or the
        same record delivered again after a crash) or the earlier record's (a repeat: skip it). A claim lives
        ``ttl_s`` seconds. Atomic per id, so consumers racing on one id agree on a single owner.
        """

    @abc.abstractmethod
    def release_event_ids(self, claims: Mapping[str, LogPosition]) -> None:
        """Drop the claim of each id whose owner is still the position given (its record was dead-lettered
        rather than applied, so a corrected event under the same id may be applied later)."""

    # ---- coordination -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lock for ``owner`` unless another live owner holds it.

        Parameters
        ----------
        name
            The lock, within this store's namespace (e.g. ``"batch"``).
        owner
            Who takes it; the holder calling again renews it.
        ttl_s
            The lock lapses this long after it was taken or renewed.

        Returns
        -------
        bool
            Whether ``owner`` now holds the lock.
        """

    @abc.abstractmethod
    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it."""

    def lock_holder(self, name: str) -> tuple[str, float] | None:
        """Who holds the named lock and in how many seconds it lapses unless renewed; None when it is free (or
        the backend cannot tell)."""
        return None

    def init_schema(self) -> None:
        """Create what the backend needs (keyspace, tables) if absent; safe to repeat.

        SQLite does this on open; Cassandra needs it once per keyspace (``lambdarec store init``).
        """
        return None  # nothing to create unless the backend says otherwise

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``StoreUnavailableError`` unless the backend answers, reading what serving needs: the current
        pointer in this store's keyspace (or files) and namespace. A store without its schema raises
        ``StoreError`` saying what is missing."""

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


def decode_fresh_users(pairs: Iterable[tuple[str, bytes]]) -> dict[str, FreshUser]:
    """``user_id -> FreshUser`` of stored pairs; rows that do not decode raise one ``CorruptRowError`` naming them
    (``keys``) and carrying every other row (``rows``), as for snapshot rows."""
    rows, bad = {}, {}
    for user_id, data in pairs:
        try:
            rows[user_id] = decode_fresh_user(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad[user_id] = f"user {user_id!r}: fresh state does not decode: {exc}"
    if bad:
        raise CorruptRowError(f"{len(bad)} corrupt fresh state row(s): " + "; ".join(list(bad.values())[:5]),
                              keys=list(bad), rows=rows)  # fmt: skip
    return rows


def decode_trending(data: bytes) -> TrendingItem:
    return msgspec.msgpack.decode(data, type=TrendingItem)


# ---- lifecycle rules shared by the backends -----------------------------------------------------------------


def meta_json(value: Mapping[str, Any], what: str) -> str:
    """``value`` as JSON text; a ``ValueError`` naming ``what`` when it is not JSON-able."""
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"snapshot {what} must be JSON-able (str, numbers, lists, dicts): {exc}") from None


def expected_counts(version: str, manifest: Mapping[str, Any]) -> tuple[int, int]:
    """``(user_rows, item_rows)`` from ``manifest["counts"]``; a ``ValueError`` naming what is missing."""
    counts = manifest.get("counts")
    if not isinstance(counts, Mapping):
        raise ValueError(
            f"publish({version}): manifest needs a 'counts' mapping with 'user_rows' and 'item_rows'; got {counts!r}"
        )
    out = []
    for key in ("user_rows", "item_rows"):
        value = counts.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"publish({version}): manifest counts.{key} must be an integer >= 0; got {value!r}")
        out.append(value)
    return out[0], out[1]


def missing_arrays(manifest: Mapping[str, Any], stored: Iterable[str]) -> list[str]:
    """Problems for arrays the manifest lists under ``"arrays"`` that were never written."""
    have = set(stored)
    return [
        f"array {name!r} is listed in the manifest but was not written"
        for name in manifest.get("arrays", ())
        if name not in have
    ]


def require_writing(version: str, state: SnapshotState | None) -> None:
    """Raise unless ``version`` exists and is still being written (published snapshots are immutable)."""
    if state is None:
        raise SnapshotNotFoundError(f"no snapshot has version {version!r}; begin_snapshot() creates one")
    if state != "writing":
        raise SnapshotStateError(
            f"snapshot {version} is {state}, so it can no longer be written; begin a new version instead"
        )


def require_activatable(info: SnapshotInfo, expired: bool = False) -> None:
    """Raise ``SnapshotStateError`` saying why ``info`` cannot become current."""
    why = {
        "writing": "it was never published (its write did not finish, or did not pass validation)",
        "retired": "it was retired by prune; its rows are deleted or expiring",
    }.get(info.state)
    if why is None and expired:
        why = "its rows have outlived the store's snapshot TTL"
    if why:
        raise SnapshotStateError(f"cannot activate snapshot {info.version}: {why}")


def prune_plan(snapshots: Iterable[SnapshotInfo], keep: int, now: datetime, abandon_after_s: float) -> list[str]:
    """Versions ``prune(keep)`` retires: published ones beyond the newest ``keep`` (never the current one) and
    writes abandoned for longer than ``abandon_after_s``."""
    if keep < 1:
        raise ValueError(f"prune keeps at least 1 published version; got keep={keep}")
    newest_first = sorted(snapshots, key=lambda s: (s.created_at, s.version), reverse=True)
    published = [s for s in newest_first if s.state == "published"]
    retire = [s.version for s in published[keep:] if not s.current]
    retire += [
        s.version
        for s in newest_first
        if s.state == "writing" and (now - s.created_at).total_seconds() > abandon_after_s
    ]
    return retire


def stored_info(row: tuple[Any, ...], current: str | None) -> SnapshotInfo:
    """A ``SnapshotInfo`` from a stored (version, state, created, published, meta, manifest) row; times may be
    epoch seconds or naive UTC datetimes, meta and manifest JSON text."""

    def utc(t: Any) -> datetime | None:
        if t is None or isinstance(t, datetime):
            return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)
        return datetime.fromtimestamp(t, UTC)

    version, state, created, published, meta, manifest = row
    return SnapshotInfo(version, state, version == current, utc(created), utc(published),  # type: ignore[arg-type]
                        json.loads(meta), json.loads(manifest) if manifest else None)  # fmt: skip


def array_problems(store: OnlineStore, version: str) -> list[str]:
    """One problem per stored array of ``version`` whose chunks are missing or fail their checksum."""
    problems = []
    for name in store.array_names(version):
        try:
            store.read_array(version, name)
        except CorruptRowError as exc:
            problems.append(str(exc))
    return problems


def check_publishable(store: OnlineStore, version: str, manifest: Mapping[str, Any]) -> tuple[int, int]:
    """What every backend's ``publish`` checks before the flip; returns the expected (user rows, item rows).

    Raises ``SnapshotNotFoundError``, ``SnapshotStateError`` (not ``writing``), ``ValueError`` (manifest lacks
    counts) or ``ValidationFailedError`` (rows missing, arrays corrupt or missing).
    """
    users, items = expected_counts(version, manifest)
    require_writing(version, store.get_snapshot(version).state)
    problems = store.validate(version, users, items) + missing_arrays(manifest, store.array_names(version))
    if problems:
        raise ValidationFailedError(version, problems)
    return users, items


def check_activatable(store: OnlineStore, info: SnapshotInfo, expired: bool = False) -> None:
    """What every backend's ``activate`` checks before it moves the pointer: the state (``SnapshotStateError``),
    then the rows and arrays against the manifest as ``publish`` did (``ValidationFailedError``), so a version
    corrupted since its publish is refused and current stays as it was."""
    require_activatable(info, expired)
    manifest = info.manifest or {}
    try:
        users, items = expected_counts(info.version, manifest)
    except ValueError as exc:
        raise ValidationFailedError(info.version, [str(exc)]) from None
    problems = store.validate(info.version, users, items) + missing_arrays(manifest, store.array_names(info.version))
    if problems:
        raise ValidationFailedError(info.version, problems)


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
