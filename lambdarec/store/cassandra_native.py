"""Serving's per-request fresh-state reads from Cassandra through the C++ driver (acsylla), awaited on the event loop.

Every list serving ranks reads its user's fresh state from the store: the speed layer writes it from another
process, so it is read anew on each request. Through cassandra-driver, one read costs the serving process about
370 us of CPU, most of it in handing the request and its answer between the event loop and the driver's I/O thread
under the GIL (a prepared one-key select, measured on one core of a 2-core EPYC: 143 us on the caller's thread,
228 on the driver's). acsylla binds the C++ driver (the ScyllaDB fork of the DataStax driver, which speaks to
Apache Cassandra): its I/O threads run without the GIL and coalesce the socket writes of concurrent requests, and
each answer resolves an asyncio future on the event loop that sent it. The same read cost 179 us; 16 concurrent
ones 41 us each; an ``IN`` read of 16 users 246 us against 765.

:class:`NativeFreshReads` reads only what the store's ``read_fresh_users`` reads (the same table, statements and
decoding, through the store's map of decoded states), with the store's consistency, credentials, datacenter,
timeouts and reconnection settings; everything else serving reads (snapshots, batch rows, trending, the catalog)
and every write still goes through the store and cassandra-driver. A read the driver cannot do raises
``StoreUnavailableError`` (serving answers degraded, as for any store failure). ``serving.cassandra_reads``
chooses it (``auto``: where acsylla is installed).

Example
-------
>>> reads = await NativeFreshReads.open(settings.store, store)                       # doctest: +SKIP
>>> states = await reads.read_fresh_users_future(["u1", "u2"])                          # doctest: +SKIP
>>> await reads.close()                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lambdarec.logs import get_logger
from lambdarec.masking import mask_url
from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra_fresh import IN_KEYS, SELECT_FRESH_USERS
from lambdarec.store.erasure import fresh_rows
from lambdarec.store.errors import StoreUnavailableError

if TYPE_CHECKING:
    from lambdarec.store.port import OnlineStore

log = get_logger(__name__)


def import_error() -> str | None:
    """Why acsylla cannot be imported here (no wheel for this platform was installed), or None."""
    try:
        import acsylla  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


class NativeFreshReads:
    """Fresh-state reads of one store namespace through acsylla, for the event loop that opened it (one per
    serving worker). Its futures are that loop's: await them there."""

    loop_native = True  # its futures resolve on the event loop (serving_layer.fresh_reads keeps theirs there too)

    def __init__(self, session: Any, one: Any, many: Any, store: OnlineStore, namespace: str, where: str):
        self._session, self._one, self._many = session, one, many
        self._store, self._ns, self._where = store, namespace, where
        self._errors: tuple[type[BaseException], ...] = _driver_errors()

    @classmethod
    async def open(cls, settings: StoreSettings, store: OnlineStore) -> NativeFreshReads:
        """Connect to the cluster ``settings.url`` names and prepare the two reads; ``StoreUnavailableError``
        naming the hosts when the cluster does not answer, ``ImportError`` without acsylla."""
        import acsylla

        url = schema.parse_url(settings.url)
        backend = settings.cassandra
        user, password = schema.credentials(settings, url)
        where = f"{mask_url(settings.url)} ({url.where})"
        try:
            cluster = acsylla.create_cluster(
                list(url.hosts),
                port=url.port,
                username=user or None,
                password=password if user else None,
                connect_timeout=backend.connect_timeout_s,
                request_timeout=settings.request_timeout_s,
                # the C++ driver speaks v4 at most (v5 is a beta there); these reads need nothing of v5
                protocol_version=min(backend.protocol_version, 4),
                consistency=_level(backend.read_consistency),
                load_balance_dc_aware=url.dc,
                token_aware_routing=True,
                exponential_reconnect_base_delay_ms=100,
                exponential_reconnect_max_delay_ms=max(100, int(backend.reconnect_max_s * 1000)),
                # it logs at error level that a Cassandra node gives no ScyllaDB shard information, at every start;
                # a failed read or connection raises here, with the driver's message
                log_level="critical",
                application_name="lambdarec-serving",
            )
            session = await cluster.create_session()
            one = await session.create_prepared(schema.SELECT_FRESH_USER.format(ks=url.keyspace))
            many = await session.create_prepared(SELECT_FRESH_USERS.format(ks=url.keyspace))
        except _driver_errors() as exc:
            raise StoreUnavailableError(
                f"the C++ driver (acsylla) cannot read from Cassandra at {where}: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("store.native_reads_open", store=mask_url(settings.url), driver="acsylla")
        return cls(session, one, many, store, settings.namespace, where)

    def read_fresh_users_future(self, user_ids: Sequence[str]) -> asyncio.Future[dict[str, FreshUser]]:
        """The store's ``read_fresh_users(user_ids)``, sent now: one token-aware read for one user, else ``IN``
        reads of at most ``IN_KEYS`` users, all in flight at once. A future of the running event loop."""
        return asyncio.ensure_future(self._read(list(dict.fromkeys(user_ids))))

    async def _read(self, ids: list[str]) -> dict[str, FreshUser]:
        try:
            if len(ids) == 1:
                results = [await self._session.execute(self._one.bind([self._ns, ids[0]]))]
            else:
                sent = [self._session.execute(self._many.bind([self._ns, ids[i : i + IN_KEYS]]))
                        for i in range(0, len(ids), IN_KEYS)]  # fmt: skip
                results = await asyncio.gather(*sent)
        except self._errors as exc:
            raise StoreUnavailableError(
                f"Cassandra failed a read (read user state) through the C++ driver at {self._where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return fresh_rows((row.as_tuple() for result in results for row in result), self._store.decoded_fresh)

    async def close(self) -> None:
        """Close the session (its connections); reads sent after it fail."""
        try:
            await self._session.close()
        except self._errors as exc:  # already closed, or the cluster went away: nothing left to release
            log.info("store.native_reads_close_failed", reason=f"{type(exc).__name__}: {exc}")


def _level(name: str) -> str:
    """A consistency level's name as acsylla takes it, checked as the store checks it."""
    schema.consistency(name, "read_consistency")  # a ValueError naming the setting for a level that is none
    return name.upper()


def _driver_errors() -> tuple[type[BaseException], ...]:
    """What acsylla raises for a failed request or connection."""
    from acsylla import errors

    return (errors.CassException,)
