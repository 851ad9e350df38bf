"""The distributed ``OnlineStore``: Apache Cassandra through cassandra-driver.

Prepared statements only, each marked idempotent unless it is a lightweight transaction; bulk writes go through
``execute_concurrent_with_args`` in bounded chunks; consistency comes from two execution profiles (``write``:
``store.cassandra.write_consistency``, default: ``store.cassandra.read_consistency``). Tables are in
``cassandra_schema``.

Example
-------
>>> store = CassandraStore(StoreSettings(url="cassandra://db1,db2:9042/recs?dc=dc1"))  # doctest: +SKIP
>>> store.init_schema()                                                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from typing import Any

import numpy as np
from cassandra import ConsistencyLevel, DriverException, InvalidRequest, OperationTimedOut, RequestExecutionException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, PreparedStatement, tuple_factory

from lambdarec.logs import get_logger
from lambdarec.masking import mask_url
from lambdarec.settings import StoreSettings
from lambdarec.store import base, codec
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.base import FreshUser, ItemRow, OnlineStore, SnapshotInfo, TrendingItem, UserRow

log = get_logger(__name__)

WRITE = "write"
BULK_CHUNK = 5000  # rows handed to one execute_concurrent_with_args call: bounds the driver's result list
ARRAY_FETCH = 4  # array chunks per page (<= 4 MiB a page)


def _chunks(items: Iterable[Any], size: int) -> Iterator[Iterator[Any]]:
    """Consecutive generators of at most ``size`` items; each must be consumed before the next is asked for."""
    it = iter(items)
    for first in it:
        yield chain((first,), islice(it, size - 1))


def _datacenters_of(connection: dict[str, Any]) -> list[str]:
    """The datacenters a cluster reports, asked with no local datacenter; empty when it does not answer."""
    probe = Cluster(
        execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy())},
        **connection,
    )
    try:
        probe.connect()
        return sorted({h.datacenter for h in probe.metadata.all_hosts() if h.datacenter})
    except (NoHostAvailable, DriverException, OSError):
        return []
    finally:
        probe.shutdown()


def _check_datacenter(url: schema.CassandraURL, datacenters: list[str]) -> None:
    if datacenters and url.dc not in datacenters:
        raise ValueError(
            f"store.url names datacenter {url.dc!r}, but the cluster at {url.where} has "
            f"{', '.join(datacenters)}: use ?dc={datacenters[0]}"
        )


class CassandraStore(OnlineStore):
    """``OnlineStore`` on the keyspace named by ``settings.url``; ``init_schema()`` creates it."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self.url = schema.parse_url(settings.url)
        self._ks, self._ns = self.url.keyspace, settings.namespace
        self._snap_ttl, self._fresh_ttl = settings.snapshot_ttl_s, settings.fresh_ttl_s
        user = settings.cassandra.username or self.url.username
        password = settings.cassandra.password.get_secret_value() if settings.cassandra.password else self.url.password
        lbp = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.url.dc))
        timeout = settings.request_timeout_s

        def profile(level: str, setting: str) -> ExecutionProfile:
            return ExecutionProfile(
                load_balancing_policy=lbp,
                consistency_level=schema.consistency(level, setting),
                serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
                request_timeout=timeout,
                row_factory=tuple_factory,
            )

        connection = {
            "contact_points": list(self.url.hosts),
            "port": self.url.port,
            "auth_provider": PlainTextAuthProvider(user, password) if user else None,
            "protocol_version": settings.cassandra.protocol_version,
            "connect_timeout": settings.cassandra.connect_timeout_s,
            "control_connection_timeout": settings.cassandra.connect_timeout_s,
        }
        self._cluster = Cluster(
            execution_profiles={
                EXEC_PROFILE_DEFAULT: profile(settings.cassandra.read_consistency, "read_consistency"),
                WRITE: profile(settings.cassandra.write_consistency, "write_consistency"),
            },
            **connection,
            reconnection_policy=ExponentialReconnectionPolicy(
                0.1, settings.cassandra.reconnect_max_s, max_attempts=None
            ),
        )
        try:
            with self._guard("connect"):
                self._session = self._cluster.connect()
        except base.StoreUnavailableError as exc:
            self._cluster.shutdown()
            # A datacenter the cluster lacks leaves the driver no host to try (a list, not a dict of host errors):
            # say so, rather than "unreachable". Only then is the cluster asked again, without a datacenter.
            cause = exc.__cause__
            if self.url.dc and isinstance(cause, NoHostAvailable) and not isinstance(cause.errors, dict):
                _check_datacenter(self.url, _datacenters_of(connection))
            raise
        self.datacenters = sorted({h.datacenter for h in self._cluster.metadata.all_hosts() if h.datacenter})
        """The cluster's datacenters, as its nodes report them (``store init`` names them)."""
        self._prepared: dict[str, PreparedStatement] = {}
        self._lock = threading.Lock()
        self._current = base.CurrentPointer(self._read_pointer, settings.current_cache_s)
        log.debug("store.opened", backend="cassandra", hosts=self.url.where, keyspace=self._ks, namespace=self._ns)

    # ---- plumbing ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Driver errors as store errors that name the hosts, or the missing schema."""
        try:
            yield
        except NoHostAvailable as exc:
            errors = exc.errors if isinstance(exc.errors, dict) else {}  # a list when no host was even tried
            tried = "; ".join(f"{host}: {err}" for host, err in errors.items()) or self.url.where
            raise base.StoreUnavailableError(f"Cassandra did not answer ({what}); tried {tried}") from exc
        except (OperationTimedOut, RequestExecutionException) as exc:
            raise base.StoreUnavailableError(f"Cassandra at {self.url.where} did not answer ({what}): {exc}") from exc
        except InvalidRequest as exc:
            missing = any(word in str(exc) for word in ("does not exist", "unconfigured table"))
            hint = f"; create it with `lambdarec store init --store {mask_url(self.settings.url)}`" if missing else ""
            raise base.StoreError(f"Cassandra keyspace {self._ks} refused {what}: {exc}{hint}") from exc
        except DriverException as exc:
            raise base.StoreError(f"Cassandra at {self.url.where} failed ({what}): {exc}") from exc

    def _stmt(self, cql: str) -> PreparedStatement:
        stmt = self._prepared.get(cql)
        if stmt is None:
            with self._lock, self._guard("prepare " + schema.describe(cql)):
                stmt = self._session.prepare(cql.format(ks=self._ks))
                stmt.is_idempotent = cql not in schema.LWT
                if cql == schema.SELECT_CHUNKS:
                    stmt.fetch_size = ARRAY_FETCH
                self._prepared[cql] = stmt
        return stmt

    def _run(self, cql: str, params: tuple[Any, ...], profile: object = EXEC_PROFILE_DEFAULT) -> Any:
        with self._guard(schema.describe(cql)):
            return self._session.execute(self._stmt(cql), params, execution_profile=profile)

    def _many(self, cql: str, params: Iterable[tuple[Any, ...]], profile: object = WRITE) -> Iterator[Any]:
        """Run ``cql`` once per parameter tuple, concurrently, ``BULK_CHUNK`` at a time; yield the result sets."""
        stmt = self._stmt(cql)
        backend = self.settings.cassandra
        concurrency = backend.write_concurrency if profile == WRITE else backend.read_concurrency
        for piece in _chunks(params, BULK_CHUNK):
            with self._guard(schema.describe(cql)):
                results = execute_concurrent_with_args(
                    self._session, stmt, piece, concurrency=concurrency, raise_on_first_error=True,
                    execution_profile=profile,
                )  # fmt: skip
            yield from (r.result_or_exc for r in results)

    def _write_many(self, cql: str, params: Iterable[tuple[Any, ...]]) -> int:
        return sum(1 for _ in self._many(cql, params))

    def _state(self, version: str) -> Any:
        row = self._run(schema.SELECT_SNAPSHOT, (self._ns, version), WRITE).one()
        return row[1] if row else None

    # ---- snapshot lifecycle -----------------------------------------------------------------------------------

    def init_schema(self) -> None:
        with self._guard("create the schema"):
            schema.create(self._session, self._ks, self.settings)

    def begin_snapshot(self, meta: Mapping[str, Any]) -> str:
        version, text = base.new_version(), base.meta_json(meta, "meta")
        self._run(schema.INSERT_SNAPSHOT, (self._ns, version, datetime.now(UTC), text), WRITE)
        log.info("snapshot.begun", version=version, backend="cassandra")
        return version

    def write_array(self, version: str, name: str, array: np.ndarray) -> None:
        base.require_writing(version, self._state(version))
        data = codec.array_to_bytes(np.asarray(array))
        pieces = codec.chunk(data)
        self._write_many(schema.INSERT_CHUNK, ((version, name, i, p, self._snap_ttl) for i, p in enumerate(pieces)))
        self._run(
            schema.INSERT_ARRAY, (version, name, len(pieces), len(data), codec.checksum(data), self._snap_ttl), WRITE
        )

    def write_users(self, version: str, rows: Iterable[UserRow], part: str | None = None) -> int:
        return self._write_part(version, "users", part, schema.INSERT_USER,
                                ((version, r.user_id, codec.encode_user(r), self._snap_ttl) for r in rows))  # fmt: skip

    def write_items(self, version: str, rows: Iterable[ItemRow], part: str | None = None) -> int:
        encoded = (
            (version, schema.item_bucket(int(r.item)), int(r.item), codec.encode_item(r), self._snap_ttl) for r in rows
        )
        return self._write_part(version, "items", part, schema.INSERT_ITEM, encoded)

    def _write_part(self, version: str, kind: str, part: str | None, cql: str, params: Iterable[Any]) -> int:
        base.require_writing(version, self._state(version))
        written = self._write_many(cql, params)
        # The tally lands after its rows; a retried part rewrites the same tally row instead of adding one.
        self._run(schema.INSERT_PART, (version, kind, part or uuid.uuid4().hex, written, self._snap_ttl), WRITE)
        return written

    def validate(self, version: str, expected_users: int, expected_items: int) -> list[str]:
        self.get_snapshot(version)
        counts = {"users": 0, "items": 0}
        for kind, rows in self._run(schema.SELECT_PARTS, (version,), WRITE):
            counts[kind] += rows
        problems = [
            f"{kind[:-1]} rows: {counts[kind]} stored, the manifest expects {expected}"
            for kind, expected in (("users", expected_users), ("items", expected_items))
            if counts[kind] != expected
        ]
        return problems + base.array_problems(self, version)

    def publish(self, version: str, manifest: Mapping[str, Any]) -> None:
        text = base.meta_json(manifest, "manifest")
        users, items = base.check_publishable(self, version, manifest)
        flip = BatchStatement()  # logged: the state change and the pointer land together or not at all
        flip.add(self._stmt(schema.MARK_PUBLISHED), (datetime.now(UTC), text, self._ns, version))
        flip.add(self._stmt(schema.SET_POINTER), (self._ns, version))
        with self._guard("publish"):
            self._session.execute(flip, execution_profile=WRITE)
        self._current.set(version)
        log.info("snapshot.published", version=version, users=users, items=items, backend="cassandra")

    def list_snapshots(self) -> list[SnapshotInfo]:
        current = self.current_version(max_age_s=0)
        infos = [base.stored_info(row, current) for row in self._run(schema.SELECT_SNAPSHOTS, (self._ns,), WRITE)]
        return sorted(infos, key=lambda s: (s.created_at, s.version), reverse=True)

    def get_snapshot(self, version: str) -> SnapshotInfo:
        row = self._run(schema.SELECT_SNAPSHOT, (self._ns, version), WRITE).one()
        if row is None:
            raise base.SnapshotNotFoundError(f"no snapshot has version {version!r} in namespace {self._ns!r}")
        return base.stored_info(row, self.current_version(max_age_s=0))

    def activate(self, version: str) -> None:
        info = self.get_snapshot(version)
        expired = datetime.now(UTC) - info.created_at > timedelta(seconds=self.settings.snapshot_ttl_s)
        base.check_activatable(self, info, expired=expired)
        self._run(schema.SET_POINTER, (self._ns, version), WRITE)
        self._current.set(version)
        log.info("snapshot.activated", version=version, backend="cassandra")

    def prune(self, keep: int) -> list[str]:
        # Rows of retired versions expire by the tables' TTL: no deletes, no tombstones to read past.
        plan = base.prune_plan(self.list_snapshots(), keep, datetime.now(UTC), self.settings.abandon_after_s)
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
        ids = list(dict.fromkeys(user_ids))
        results = self._many(schema.SELECT_USER, ((version, uid) for uid in ids), EXEC_PROFILE_DEFAULT)
        rows = ((uid, rs.one()) for uid, rs in zip(ids, results, strict=True))
        return codec.decode_users(version, ((uid, row[0]) for uid, row in rows if row))

    def read_user(self, version: str, user_id: str) -> UserRow | None:
        row = self._run(schema.SELECT_USER, (version, user_id)).one()
        return codec.decode_user(user_id, row[0]) if row else None

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
        params = ((self._ns, s.user_id, base.encode_fresh(s), self._fresh_ttl) for s in states)
        return self._write_many(schema.UPSERT_FRESH_USER, params)

    def read_fresh_users(self, user_ids: Iterable[str]) -> dict[str, FreshUser]:
        params = [(self._ns, uid) for uid in dict.fromkeys(user_ids)]
        results = self._many(schema.SELECT_FRESH_USER, params, EXEC_PROFILE_DEFAULT)
        return base.decode_fresh_users((uid, data) for rs in results for uid, data in rs)

    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        ttl, bucket = self._fresh_ttl, schema.trending_bucket
        params = ((self._ns, bucket(t.key), t.key, base.encode_fresh(t), ttl) for t in items)
        return self._write_many(schema.UPSERT_TRENDING, params)

    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        if item_ids is None:
            params = [(self._ns, b) for b in range(schema.TRENDING_BUCKETS)]
            results = self._many(schema.SELECT_TRENDING_BUCKET, params, EXEC_PROFILE_DEFAULT)
        else:
            params = [(self._ns, schema.trending_bucket(i), i) for i in dict.fromkeys(item_ids)]
            results = self._many(schema.SELECT_TRENDING, params, EXEC_PROFILE_DEFAULT)
        return {item_id: base.decode_trending(data) for rs in results for item_id, data in rs}

    # ---- event ids ------------------------------------------------------------------------------------------

    def claim_event_ids(self, claims: Mapping[str, base.LogPosition], ttl_s: float) -> dict[str, base.LogPosition]:
        # One lightweight transaction per id (Paxos on its own partition), run concurrently: consumers racing on
        # an id agree on one owner, and a record claiming again after a crash finds its own position.
        ttl = max(1, math.ceil(ttl_s))
        ids = list(claims)
        params = ((self._ns, eid, claims[eid][0], claims[eid][1], ttl) for eid in ids)
        owners = {}
        for eid, rs in zip(ids, self._many(schema.CLAIM_EVENT_ID, params), strict=True):
            if rs.was_applied:
                owners[eid] = claims[eid]
            else:
                row = dict(zip(rs.column_names, rs.one(), strict=True))
                owners[eid] = (row["part"], row["pos"])
        return owners

    def release_event_ids(self, claims: Mapping[str, base.LogPosition]) -> None:
        params = [(self._ns, eid, p, o) for eid, (p, o) in claims.items()]
        for _ in self._many(schema.RELEASE_EVENT_ID, params):
            pass

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

    def close(self) -> None:
        self._cluster.shutdown()
