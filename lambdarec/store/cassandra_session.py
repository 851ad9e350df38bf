"""The Cassandra store's session: the cluster connection, its two execution profiles, prepared statements, bulk
execution, and driver errors turned into store errors that name the hosts or the missing schema.

Consistency comes from two execution profiles (``write``: ``store.cassandra.write_consistency``, default:
``store.cassandra.read_consistency``). Every statement is prepared once and marked idempotent unless it is a lightweight
transaction; bulk runs go through ``execute_concurrent_with_args`` in bounded chunks.

Example
-------
>>> cql = CassandraSession(StoreSettings(url="cassandra://db1:9042/recs?dc=dc1"))   # doctest: +SKIP
>>> cql.run(schema.SELECT_POINTER, ("default",)).one()                             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

from cassandra import ConsistencyLevel, DriverException, InvalidRequest, OperationTimedOut, RequestExecutionException
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, ResponseFuture
from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, PreparedStatement, tuple_factory

from lambdarec.logs import get_logger
from lambdarec.masking import mask_url
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra_limits import BatchLimits, read_limits
from lambdarec.store.errors import StoreError, StoreUnavailableError

log = get_logger(__name__)

WRITE = "write"
BULK_CHUNK = 5000  # rows handed to one execute_concurrent_with_args call: bounds the driver's result list
ARRAY_FETCH = 4  # array chunks per page (<= 4 MiB a page)


def chunks(items: Iterable[Any], size: int) -> Iterator[Iterator[Any]]:
    """Consecutive generators of at most ``size`` items; each must be consumed before the next is asked for."""
    it = iter(items)
    for first in it:
        yield chain((first,), islice(it, size - 1))


def datacenters_of(connection: dict[str, Any]) -> list[str]:
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


def check_datacenter(url: schema.CassandraURL, datacenters: list[str]) -> None:
    if datacenters and url.dc not in datacenters:
        raise ValueError(
            f"store.url names datacenter {url.dc!r}, but the cluster at {url.where} has "
            f"{', '.join(datacenters)}: use ?dc={datacenters[0]}"
        )


class CassandraSession:
    """One cluster connection and its prepared statements, for the keyspace ``settings.url`` names."""

    def __init__(self, settings: StoreSettings):
        """Connect to the cluster ``settings.url`` names; ``StoreUnavailableError`` naming the hosts tried."""
        self.settings = settings
        self.url = schema.parse_url(settings.url)
        self.keyspace = self.url.keyspace
        backend = settings.cassandra
        user, password = schema.credentials(settings, self.url)
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
            "protocol_version": backend.protocol_version,
            "connect_timeout": backend.connect_timeout_s,
            "control_connection_timeout": backend.connect_timeout_s,
        }
        self.cluster = Cluster(
            execution_profiles={
                EXEC_PROFILE_DEFAULT: profile(backend.read_consistency, "read_consistency"),
                WRITE: profile(backend.write_consistency, "write_consistency"),
            },
            **connection,
            reconnection_policy=ExponentialReconnectionPolicy(0.1, backend.reconnect_max_s, max_attempts=None),
        )
        try:
            with self.guard("connect"):
                self._session = self.cluster.connect()
        except StoreUnavailableError as exc:
            self.cluster.shutdown()
            # A datacenter the cluster lacks leaves the driver no host to try (a list, not a dict of host errors):
            # say so, rather than "unreachable". Only then is the cluster asked again, without a datacenter.
            cause = exc.__cause__
            if self.url.dc and isinstance(cause, NoHostAvailable) and not isinstance(cause.errors, dict):
                check_datacenter(self.url, datacenters_of(connection))
            raise
        self.datacenters = sorted({h.datacenter for h in self.cluster.metadata.all_hosts() if h.datacenter})
        """The cluster's datacenters, as its nodes report them (``store init`` names them)."""
        self._prepared: dict[str, PreparedStatement] = {}
        self._lock = threading.Lock()
        self._limits: BatchLimits | None = None

    @property
    def batch_limits(self) -> BatchLimits:
        """How large an unlogged batch over several partitions may be: under the node's warning thresholds, read
        the first time a batch is built (:mod:`lambdarec.store.cassandra_limits`)."""
        if self._limits is None:
            limits, source = read_limits(self.run)
            log.info("store.cassandra_batch_limits", bytes=limits.bytes, partitions=limits.partitions, source=source)
            self._limits = limits
        return self._limits

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Driver errors as store errors that name the hosts, or the missing schema."""
        try:
            yield
        except (NoHostAvailable, OperationTimedOut, RequestExecutionException, InvalidRequest, DriverException) as exc:
            raise self.store_error(exc, what) from exc

    def store_error(self, exc: BaseException, what: str) -> BaseException:
        """The store error a driver error stands for (naming the hosts, or the missing schema); any other
        exception as it is."""
        if isinstance(exc, NoHostAvailable):
            errors = exc.errors if isinstance(exc.errors, dict) else {}  # a list when no host was even tried
            tried = "; ".join(f"{host}: {err}" for host, err in errors.items()) or self.url.where
            return StoreUnavailableError(f"Cassandra did not answer ({what}); tried {tried}")
        if isinstance(exc, (OperationTimedOut, RequestExecutionException)):
            return StoreUnavailableError(f"Cassandra at {self.url.where} did not answer ({what}): {exc}")
        if isinstance(exc, InvalidRequest):
            missing = any(word in str(exc) for word in ("does not exist", "unconfigured table", "Undefined column"))
            hint = f"; create it with `lambdarec store init --store {mask_url(self.settings.url)}`" if missing else ""
            return StoreError(f"Cassandra keyspace {self.keyspace} refused {what}: {exc}{hint}")
        if isinstance(exc, DriverException):
            return StoreError(f"Cassandra at {self.url.where} failed ({what}): {exc}")
        return exc

    def stmt(self, cql: str) -> PreparedStatement:
        stmt = self._prepared.get(cql)
        if stmt is None:
            with self._lock, self.guard("prepare " + schema.describe(cql)):
                stmt = self._session.prepare(cql.format(ks=self.keyspace))
                stmt.is_idempotent = cql not in schema.LWT
                if cql == schema.SELECT_CHUNKS:
                    stmt.fetch_size = ARRAY_FETCH
                self._prepared[cql] = stmt
        return stmt

    def run(self, cql: str, params: tuple[Any, ...], profile: object = EXEC_PROFILE_DEFAULT) -> Any:
        with self.guard(schema.describe(cql)):
            return self._session.execute(self.stmt(cql), params, execution_profile=profile)

    def submit(self, cql: str, params: tuple[Any, ...], profile: object = EXEC_PROFILE_DEFAULT) -> ResponseFuture:
        """Send ``cql`` without waiting (the driver's own I/O thread reads the answer): its ``ResponseFuture``."""
        stmt = self.stmt(cql)
        with self.guard(schema.describe(cql)):
            return self._session.execute_async(stmt, params, execution_profile=profile)

    def many(self, cql: str, params: Iterable[tuple[Any, ...]], profile: object = WRITE) -> Iterator[Any]:
        """Run ``cql`` once per parameter tuple, concurrently, ``BULK_CHUNK`` at a time; yield the result sets."""
        stmt = self.stmt(cql)
        backend = self.settings.cassandra
        concurrency = backend.write_concurrency if profile == WRITE else backend.read_concurrency
        for piece in chunks(params, BULK_CHUNK):
            with self.guard(schema.describe(cql)):
                results = execute_concurrent_with_args(
                    self._session, stmt, piece, concurrency=concurrency, raise_on_first_error=True,
                    execution_profile=profile,
                )  # fmt: skip
            yield from (r.result_or_exc for r in results)

    def write_many(self, cql: str, params: Iterable[tuple[Any, ...]]) -> int:
        return sum(1 for _ in self.many(cql, params))

    def execute(self, cql: str, params: tuple[Any, ...] = (), profile: object = WRITE) -> Any:
        """Run one statement, prepared, with ``{ks}`` standing for this keyspace: a door for operators and tests
        (fault injection) that keeps the rule of prepared statements only. Returns the result set."""
        with self.guard(schema.describe(cql)):
            return self._session.execute(self._session.prepare(cql.format(ks=self.keyspace)), params,
                                         execution_profile=profile)  # fmt: skip

    def run_batch(self, batch: BatchStatement, what: str) -> None:
        """Run a logged batch with the write profile: its statements land together or not at all."""
        with self.guard(what):
            self._session.execute(batch, execution_profile=WRITE)

    def ddl(self, what: str, run: Any) -> None:
        """Run ``run(session)`` (a schema change) with driver errors as store errors naming ``what``."""
        with self.guard(what):
            run(self._session)

    def run_batches(self, batches: list[BatchStatement], what: str, in_flight: int | None = None) -> list[Any]:
        """Run many batches concurrently (``write_concurrency`` in flight, or fewer if ``in_flight`` says so) with
        the write profile; their result sets, in order (a conditional batch's says whether it applied)."""
        concurrency = min(self.settings.cassandra.write_concurrency, in_flight or 1 << 30)
        with self.guard(what):
            results = execute_concurrent(
                self._session, [(b, None) for b in batches], concurrency=concurrency, raise_on_first_error=True,
                execution_profile=WRITE,
            )  # fmt: skip
        return [r.result_or_exc for r in results]

    def shutdown(self) -> None:
        self.cluster.shutdown()
