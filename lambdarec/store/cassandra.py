"""The distributed ``OnlineStore``: Apache Cassandra through cassandra-driver.

The port's verbs on the tables of ``cassandra_schema``, through the prepared statements, execution profiles and
bulk runs of ``cassandra_session``.

Example
-------
>>> store = CassandraStore(StoreSettings(url="cassandra://db1,db2:9042/recs?dc=dc1"))  # doctest: +SKIP
>>> store.init_schema()                                                                # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.query import BatchStatement
from cassandra.util import unix_time_from_uuid1

from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser, ItemRow, LogPosition, ShownItems, TrendingItem, UserRow
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_catalog, cassandra_claims, cassandra_fresh, changes, codec, lifecycle, versions
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra_session import WRITE, CassandraSession
from lambdarec.store.cassandra_users import UserRows
from lambdarec.store.catalog import CatalogOf
from lambdarec.store.changes import FreshChange
from lambdarec.store.coordination import ClaimScope, ScopedIds
from lambdarec.store.erasure import fresh_rows, shown_rows
from lambdarec.store.errors import SnapshotNotFoundError
from lambdarec.store.nonblocking import gather
from lambdarec.store.port import OnlineStore
from lambdarec.store.snapshot_info import SnapshotInfo, stored_info

log = get_logger(__name__)

BUCKETED_USERS = "bucketed_users"  # the parts tally's kind for user rows in bucket partitions


class CassandraStore(CatalogOf, OnlineStore):
    """``OnlineStore`` on the keyspace named by ``settings.url``; ``init_schema()`` creates it."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self._cql = CassandraSession(settings)
        self.url, self._ks, self._ns = self._cql.url, self._cql.keyspace, settings.namespace
        self.datacenters = self._cql.datacenters
        """The cluster's datacenters, as its nodes report them (``store init`` names them)."""
        self._snap_ttl, self._fresh_ttl = settings.snapshot_ttl_s, settings.fresh_ttl_s
        self._stmt, self._run = self._cql.stmt, self._cql.run
        self._many, self._write_many = self._cql.many, self._cql.write_many
        self._current = versions.CurrentPointer(self._read_pointer, settings.current_cache_s)
        self._catalog = cassandra_catalog.CassandraCatalog(self._cql, settings)
        self._users = UserRows(self._cql, settings)
        self._claims = cassandra_claims.ScopedClaims(self._cql, self._ns)
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cassandra-layout")
        log.debug("store.opened", backend="cassandra", hosts=self.url.where, keyspace=self._ks, namespace=self._ns)

    def _state(self, version: str) -> Any:
        row = self._run(schema.SELECT_SNAPSHOT, (self._ns, version), WRITE).one()
        return row[1] if row else None

    # ---- snapshot lifecycle -----------------------------------------------------------------------------------

    def init_schema(self) -> None:
        self._cql.ddl("create the schema", lambda session: schema.create(session, self._ks, self.settings))
        self._cql.ddl("create the catalog", lambda s: cassandra_catalog.create(s, self._ks, schema.DDL_TIMEOUT_S))
        cassandra_claims.copy_legacy(self._cql, self._fresh_ttl)  # claims of the old `event_ids` table, once
        self._claims.mark_at_init()  # no claim yet: impressions need not defer to an older release's

    def drop_schema(self) -> None:
        self._cql.ddl("drop the keyspace", lambda session: schema.drop(session, self._ks))

    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        version, text = versions.new_version(), lifecycle.meta_json(meta, "meta")
        self._users.begin(version, meta)  # the users' partitions, before the version exists
        self._run(schema.INSERT_SNAPSHOT, (self._ns, version, datetime.now(UTC), text), WRITE)
        log.info("snapshot.begun", version=version, backend="cassandra")
        return version

    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        lifecycle.require_writing(version, self._state(version))
        pieces = codec.chunk(data := codec.array_to_bytes(np.asarray(array)))
        self._write_many(schema.INSERT_CHUNK, ((version, name, i, p, self._snap_ttl) for i, p in enumerate(pieces)))
        self._run(
            schema.INSERT_ARRAY, (version, name, len(pieces), len(data), codec.checksum(data), self._snap_ttl), WRITE
        )

    def write_users(self, version: str, rows: Iterable[UserRow], part: str | None = None) -> int:
        encoded = ((r.user_id, codec.encode_user(r)) for r in rows)
        # tallied as "bucketed_users" in bucket partitions: validate then refuses rows an older release's writer
        # (a Ray worker not yet upgraded) put where this version's readers never look
        kind = "users" if self._users.buckets(version) is None else BUCKETED_USERS
        return self._write_part(version, kind, part, lambda: self._users.write(version, encoded))

    def write_items(self, version: str, rows: Iterable[ItemRow], part: str | None = None) -> int:
        encoded = (
            (version, schema.item_bucket(int(r.item)), int(r.item), codec.encode_item(r), self._snap_ttl) for r in rows
        )
        return self._write_part(version, "items", part, lambda: self._write_many(schema.INSERT_ITEM, encoded))

    def _write_part(self, version: str, kind: str, part: str | None, write: Callable[[], int]) -> int:
        lifecycle.require_writing(version, self._state(version))
        written = write()
        # The tally lands after its rows; a retried part rewrites the same tally row instead of adding one.
        self._run(schema.INSERT_PART, (version, kind, part or uuid.uuid4().hex, written, self._snap_ttl), WRITE)
        return written

    def validate(self, version: str, expected_users: int, expected_items: int) -> list[str]:
        self.get_snapshot(version)
        counts = {"users": 0, "items": 0, BUCKETED_USERS: 0}
        for kind, rows in self._run(schema.SELECT_PARTS, (version,), WRITE):
            counts[kind] = counts.get(kind, 0) + rows
        misplaced = []
        if self._users.buckets(version) is not None:
            if counts["users"]:
                misplaced.append(f"{counts['users']} user rows written one partition per user, where readers of this "
                                 "version never look (a writer of an older release?)")  # fmt: skip
            counts["users"] = counts[BUCKETED_USERS]
        problems = misplaced + [
            f"{kind[:-1]} rows: {counts[kind]} stored, the manifest expects {expected}"
            for kind, expected in (("users", expected_users), ("items", expected_items))
            if counts[kind] != expected
        ]
        return problems + lifecycle.array_problems(self, version)

    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        text = lifecycle.meta_json(manifest, "manifest")
        users, items = lifecycle.check_publishable(self, version, manifest)
        flip = BatchStatement()  # logged: the state change and the pointer land together or not at all
        flip.add(self._stmt(schema.MARK_PUBLISHED), (datetime.now(UTC), text, self._ns, version))
        flip.add(self._stmt(schema.SET_POINTER), (self._ns, version))
        self._cql.run_batch(flip, "publish")
        self._current.set(version)
        log.info("snapshot.published", version=version, users=users, items=items, backend="cassandra")

    def list_snapshots(self) -> list[SnapshotInfo]:
        current = self.current_version(max_age_s=0)
        infos = [stored_info(row, current) for row in self._run(schema.SELECT_SNAPSHOTS, (self._ns,), WRITE)]
        return sorted(infos, key=lambda s: (s.created_at, s.version), reverse=True)

    def get_snapshot(self, version: str) -> SnapshotInfo:
        row = self._run(schema.SELECT_SNAPSHOT, (self._ns, version), WRITE).one()
        if row is None:
            raise SnapshotNotFoundError(f"no snapshot has version {version!r} in namespace {self._ns!r}")
        # a reader loads a version through here first: where its user rows live is then known (cached), so
        # serving's non-blocking reads never wait for that lookup on the event loop
        self._users.buckets(version)
        return stored_info(row, self.current_version(max_age_s=0))

    def activate(self, version: str) -> None:
        info = self.get_snapshot(version)
        expired = datetime.now(UTC) - info.created_at > timedelta(seconds=self.settings.snapshot_ttl_s)
        lifecycle.check_activatable(self, info, expired=expired)
        self._run(schema.SET_POINTER, (self._ns, version), WRITE)
        self._current.set(version)
        log.info("snapshot.activated", version=version, backend="cassandra")

    def prune(self, keep: int) -> list[str]:
        # Rows of retired versions expire by the tables' TTL: no deletes, no tombstones to read past.
        plan = lifecycle.prune_plan(self.list_snapshots(), keep, datetime.now(UTC), self.settings.abandon_after_s)
        self._write_many(schema.SET_STATE, (("retired", self._ns, v) for v in plan))
        log.info("snapshots.pruned", retired=plan, keep=keep, backend="cassandra")
        return plan

    def current_version(self, max_age_s: float | None = None) -> str | None:
        return self._current.get(max_age_s)

    def _read_pointer(self) -> str | None:
        row = self._run(schema.SELECT_POINTER, (self._ns,)).one()
        return row[0] if row else None

    # ---- snapshot reads -------------------------------------------------------------------------------------

    def read_array(self, version: str, name: str) -> np.ndarray:
        row = self._run(schema.SELECT_ARRAY, (version, name)).one()
        if row is None:
            raise KeyError(f"snapshot {version} has no array {name!r}; it has {self.array_names(version)}")
        pieces = [r[0] for r in self._run(schema.SELECT_CHUNKS, (version, name, row[0]))]
        return codec.join_array(version, name, pieces, row[0], row[1])

    def array_names(self, version: str) -> list[str]:
        return [r[0] for r in self._run(schema.SELECT_ARRAY_NAMES, (version,))]

    def read_users(self, version: str, user_ids: Iterable[str]) -> dict[str, UserRow]:
        return codec.decode_users(version, self._users.read(version, user_ids))

    def read_user(self, version: str, user_id: str) -> UserRow | None:
        data = self._users.read_one(version, user_id)
        return codec.decode_user(user_id, data) if data is not None else None

    def read_users_future(self, version: str, user_ids: Sequence[str]) -> Future[dict[str, UserRow]]:
        """:meth:`read_users`, its reads sent at once without waiting (see ``nonblocking.NonBlockingReads``). A
        version whose layout this process has not looked up yet (``get_snapshot`` does) is read on a thread."""
        if not self._users.knows(version):
            return self._lookups.submit(self.read_users, version, user_ids)
        ids = list(dict.fromkeys(user_ids))
        sent = lambda: self._users.submit(version, ids)  # noqa: E731
        return gather(sent, lambda answers: codec.decode_users(version, (
            (uid, rows[0][0]) for uid, rows in zip(ids, answers, strict=True) if rows)), self._read_error)  # fmt: skip

    def read_fresh_users_future(self, user_ids: Sequence[str]) -> Future[dict[str, FreshUser]]:
        """:meth:`read_fresh_users`, its reads sent at once without waiting."""
        ids = list(dict.fromkeys(user_ids))
        sent = lambda: cassandra_fresh.submit_fresh_reads(self._cql, self._ns, ids)  # noqa: E731
        decoded = self.decoded_fresh
        return gather(sent, lambda got: fresh_rows((row for rows in got for row in rows), decoded), self._read_error)

    lists_fresh_changes = True

    def read_fresh_changes_future(self, after_s: float) -> Future[list[FreshChange]]:
        """The changes stamped after ``after_s``, oldest first (one query; see ``OnlineStore``)."""
        sent = lambda: [cassandra_fresh.submit_changes_read(self._cql, self._ns, after_s, time.time())]  # noqa: E731
        return gather(sent, lambda got: _changes(got[0]), self._changes_error)

    def _changes_error(self, exc: BaseException) -> BaseException:
        return self._cql.store_error(exc, "read fresh-state changes")

    def _read_error(self, exc: BaseException) -> BaseException:
        return self._cql.store_error(exc, "read user state")

    def read_items(self, version: str, items: Iterable[int] | None = None) -> dict[int, ItemRow]:
        if items is None:
            params = [(version, b) for b in range(schema.ITEM_BUCKETS)]
            results = self._many(schema.SELECT_ITEM_BUCKET, params, EXEC_PROFILE_DEFAULT)
        else:
            params = [(version, schema.item_bucket(int(i)), int(i)) for i in dict.fromkeys(items)]
            results = self._many(schema.SELECT_ITEM, params, EXEC_PROFILE_DEFAULT)
        return codec.decode_items(version, ((item, data) for rs in results for item, data in rs))

    # ---- fresh state ----------------------------------------------------------------------------------------

    def write_fresh_users(self, states: Iterable[FreshUser]) -> int:
        return cassandra_fresh.write_fresh_users(self._cql, self._ns, states, self._fresh_ttl)

    def read_fresh_users(self, user_ids: Iterable[str]) -> dict[str, FreshUser]:
        return cassandra_fresh.read_fresh_users(self._cql, self._ns, user_ids, self.decoded_fresh)

    def write_shown(self, rows: Iterable[ShownItems]) -> int:
        return cassandra_fresh.write_shown(self._cql, self._ns, rows, self._fresh_ttl)

    def read_shown(self, user_ids: Iterable[str]) -> dict[str, ShownItems]:
        return self.read_shown_future(list(user_ids)).result()

    def write_erasures(self, users: Sequence[FreshUser], shown: Sequence[ShownItems], *, rows: bool = True) -> int:
        return cassandra_fresh.write_erasures(self._cql, self._ns, users, shown, self._fresh_ttl, rows=rows)

    def read_shown_future(self, user_ids: Sequence[str]) -> Future[dict[str, ShownItems]]:
        """:meth:`read_shown`, its reads sent at once without waiting."""
        ids = list(dict.fromkeys(user_ids))
        sent = lambda: [self._cql.submit(schema.SELECT_SHOWN, (self._ns, uid)) for uid in ids]  # noqa: E731
        return gather(sent, lambda answers: shown_rows(row for rows in answers for row in rows), self._read_error)

    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        return cassandra_fresh.write_trending(self._cql, self._ns, items, self._fresh_ttl)

    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        return cassandra_fresh.read_trending(self._cql, self._ns, item_ids)

    # ---- event ids ------------------------------------------------------------------------------------------

    def claim_event_ids(
        self, claims: Mapping[str, LogPosition], ttl_s: float, scope: ClaimScope = "events"
    ) -> dict[str, LogPosition]:
        return self.claim_event_ids_scoped({scope: claims}, ttl_s)[scope]

    def claim_event_ids_scoped(self, claims: ScopedIds, ttl_s: float) -> dict[ClaimScope, dict[str, LogPosition]]:
        return self._claims.claim(claims, ttl_s)  # a conditional batch per bucket partition, sent together

    def release_event_ids(self, claims: Mapping[str, LogPosition], scope: ClaimScope = "events") -> None:
        self._claims.release(scope, claims)

    def state_dedup_from(self, window_s: float) -> float:
        return self._claims.state_dedup_from(window_s)

    # ---- coordination -----------------------------------------------------------------------------------------

    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        ttl = max(1, math.ceil(ttl_s))
        taken = self._run(schema.TAKE_LOCK, (self._ns, name, owner, ttl), WRITE)
        if taken.was_applied:
            return True
        holder = dict(zip(taken.column_names, taken.one(), strict=True)).get("owner")
        return holder == owner and self._run(schema.RENEW_LOCK, (ttl, owner, self._ns, name, owner), WRITE).was_applied

    def unlock(self, name: str, owner: str) -> None:
        self._run(schema.RELEASE_LOCK, (self._ns, name, owner), WRITE)

    def lock_holder(self, name: str) -> tuple[str, float] | None:
        row = self._run(schema.SELECT_LOCK, (self._ns, name), WRITE).one()
        return (row[0], float(row[1] or 0)) if row else None

    def ping(self) -> None:
        # What serving needs, not `system.local`: a node that answers without the keyspace serves nothing.
        self._read_pointer()

    def execute(self, cql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one CQL statement (prepared; ``{ks}`` stands for this keyspace) and return its result set: for
        operators and tests that reach past the port, e.g. to corrupt a row on purpose."""
        return self._cql.execute(cql, params)

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)
        self._cql.shutdown()


def _changes(rows: Iterable[tuple[uuid.UUID, bytes]]) -> list[FreshChange]:
    """The changes a read gave, oldest first (rows of several minute partitions); a row that does not decode is
    a change of unknown users (``user_ids`` None: a reader drops every state it keeps), logged."""
    out = []
    for at, users in rows:
        try:
            named: list[str] | None = changes.decode_users(users)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("store.corrupt_row", table="fresh_changes", at=str(at), reason=str(exc),
                        effect="a change of unknown users: readers drop every fresh state they keep")  # fmt: skip
            named = None
        out.append(FreshChange(at, unix_time_from_uuid1(at), named))
    return sorted(out, key=lambda change: change.at_s)
