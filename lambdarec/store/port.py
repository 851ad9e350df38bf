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
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar

import numpy as np

from lambdarec.model.rows import FreshUser, ItemRow, TrendingItem, UserRow
from lambdarec.store.catalog import CatalogTable
from lambdarec.store.changes import FreshChange
from lambdarec.store.coordination import Coordination
from lambdarec.store.decoded import DecodedStates
from lambdarec.store.erasure import ErasureWrites, decoded_states
from lambdarec.store.shown import ShownTable
from lambdarec.store.snapshot_info import SnapshotInfo


class OnlineStore(Coordination, CatalogTable, ShownTable, ErasureWrites):
    """The port. Backends: ``sqlite`` (embedded default) and ``cassandra``.

    Writes of snapshot data go to versions in state ``writing`` only. ``publish`` validates and flips the
    current pointer atomically. All methods are safe to call from several threads.
    """

    embedded: ClassVar[bool] = False
    """Whether the store runs inside this process (SQLite): its calls are CPU here, not a wait on a server, so a
    caller gains nothing from overlapping them on another thread (the threads would only contend for the GIL)."""

    decoded_fresh: DecodedStates[FreshUser] | None = None
    """The fresh states this store decoded, kept by their stored bytes (:meth:`keep_decoded_fresh`); None: each
    read decodes every row."""

    lists_fresh_changes: ClassVar[bool] = False
    """Whether every write of fresh state is also listed as a change (:meth:`read_fresh_changes_future`), so
    that a reader may keep users' states in memory until they change (serving, ``serving.fresh_state_keep``)."""

    def read_fresh_changes_future(self, after_s: float) -> Future[list[FreshChange]]:
        """The listed changes (:mod:`lambdarec.store.changes`) stamped after ``after_s`` (seconds since the
        epoch), oldest first, sent without waiting; only where :attr:`lists_fresh_changes`."""
        raise NotImplementedError(f"{type(self).__name__} does not list fresh-state changes")

    def keep_decoded_fresh(self, max_bytes: int) -> None:
        """From now on, decode a fresh-state row once while its stored bytes stay the same: a row read again
        unchanged gives the object decoded before (:mod:`lambdarec.store.decoded`), within ``max_bytes``; 0 turns
        it off. For readers that read the same users' states again and again (serving)."""
        self.decoded_fresh = decoded_states(max_bytes) if max_bytes > 0 else None

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

    def init_schema(self) -> None:
        """Create what the backend needs (keyspace, tables) if absent; safe to repeat.

        SQLite does this on open; Cassandra needs it once per keyspace (``lambdarec store init``).
        """
        return None  # nothing to create unless the backend says otherwise

    @abc.abstractmethod
    def drop_schema(self) -> None:
        """Delete what ``init_schema`` created, every namespace in it included: the Cassandra keyspace, or the
        SQLite store's files (closing the store). Irreversible: for throwaway stores (tests, benchmarks)."""

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
