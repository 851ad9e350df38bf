"""The Cassandra store's batch user rows: a snapshot's users in bucket partitions, written a partition at a time.

The first layout (table ``user_rows``) kept each user in a partition of its own, so every row cost the node a
request, a commit-log entry and a memtable insert: a one-node Cassandra on two shared cores took about 1.3k rows/s
however the client sent them. A snapshot begun by this version spreads its users over ``buckets`` partitions of
``user_rows_by_bucket`` (the crc32 of the user id, so every process agrees), about
``store.cassandra.user_rows_per_partition`` users each, sized from the user count its writer announces
(``meta["counts"]["user_rows"]``, as the batch job does). ``write_users`` sends each bucket's rows of a call as
single-partition unlogged batches (one mutation per batch: no batch log, no coordinator fan-out, and exempt from
Cassandra's batch-size thresholds, which count only batches over several partitions).

The bucket count lives in ``user_row_layout`` (one row per version, written before the snapshot row). A version
without one was begun before this layout existed: it is read from and written to ``user_rows``, as then.

Example
-------
>>> users = UserRows(cql, settings)                              # doctest: +SKIP
>>> users.begin(version, {"counts": {"user_rows": 20_000}})      # 10 partitions of about 2,048 users
>>> users.write(version, [("u1", b"...")])
1
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT, ResponseFuture
from cassandra.query import BatchStatement, BatchType

from lambdarec.logs import get_logger
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_fresh
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra_fresh import PARTITION_BATCH_BYTES as BATCH_BYTES
from lambdarec.store.cassandra_fresh import _chunks, in_flight
from lambdarec.store.cassandra_session import WRITE, CassandraSession

log = get_logger(__name__)

UNKNOWN_USERS_BUCKETS = 64  # a writer that does not say how many users it writes (a few MiB a partition at 100k)
MAX_BUCKETS = 1 << 20
PENDING_BYTES = 8 * 1024 * 1024  # encoded rows held before they are sent: bounds a long iterable's memory
LAYOUTS_CACHED = 256  # versions whose bucket count a process remembers (they never change)

INSERT_LAYOUT = "INSERT INTO {ks}.user_row_layout (version, buckets) VALUES (?, ?) USING TTL ?"
SELECT_LAYOUT = "SELECT buckets FROM {ks}.user_row_layout WHERE version = ?"
INSERT_ROW = "INSERT INTO {ks}.user_rows_by_bucket (version, bucket, user_id, data) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_ROW = "SELECT data FROM {ks}.user_rows_by_bucket WHERE version = ? AND bucket = ? AND user_id = ?"
SELECT_ROWS = "SELECT user_id, data FROM {ks}.user_rows_by_bucket WHERE version = ? AND bucket = ? AND user_id IN ?"


def announced_users(meta: Mapping[str, Any]) -> int | None:
    """The user count a writer announced in ``meta["counts"]["user_rows"]`` (None if it did not)."""
    counts = meta.get("counts")
    users = counts.get("user_rows") if isinstance(counts, Mapping) else None
    if not isinstance(users, int) or isinstance(users, bool) or users < 0:
        return None
    return users


def bucket_count(meta: Mapping[str, Any], per_partition: int) -> int:
    """Partitions for a snapshot whose writer announced ``meta["counts"]["user_rows"]`` users (64 if it did not)."""
    users = announced_users(meta)
    if users is None:
        return UNKNOWN_USERS_BUCKETS
    return max(1, min(MAX_BUCKETS, math.ceil(users / per_partition)))


def user_bucket(user_id: str, buckets: int) -> int:
    # crc32, not hash(): the bucket must be the same in every process.
    return zlib.crc32(user_id.encode()) % buckets


class UserRows:
    """A snapshot's user rows in the layout its version was begun with; bucket counts cached per version."""

    def __init__(self, cql: CassandraSession, settings: StoreSettings) -> None:
        self._cql, self._ttl = cql, settings.snapshot_ttl_s
        self._per_partition = settings.cassandra.user_rows_per_partition
        self._layouts: OrderedDict[str, int | None] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, version: str, meta: Mapping[str, Any]) -> int:
        """Record ``version``'s bucket count (before its snapshot row exists, so every version has its layout)."""
        buckets = bucket_count(meta, self._per_partition)
        if announced_users(meta) is None:
            hint = 'begin_snapshot({"counts": {"user_rows": N}}) sizes the partitions for N users'
            log.warning("snapshot.users_not_announced", version=version, partitions=buckets, hint=hint)
        self._cql.run(INSERT_LAYOUT, (version, buckets, self._ttl), WRITE)
        self._remember(version, buckets)
        return buckets

    def buckets(self, version: str) -> int | None:
        """``version``'s bucket count; None for a version begun before buckets (its rows are in ``user_rows``)."""
        with self._lock:
            if version in self._layouts:
                self._layouts.move_to_end(version)
                return self._layouts[version]
        # at the write consistency, as the layout was written: a quorum read after the version exists sees it,
        # so None means a version begun before buckets, never a replica that missed the write
        row = self._cql.run(SELECT_LAYOUT, (version,), WRITE).one()
        return self._remember(version, row[0] if row else None)

    def knows(self, version: str) -> bool:
        """Whether ``version``'s layout is cached (a read needs no lookup first)."""
        with self._lock:
            return version in self._layouts

    def _remember(self, version: str, buckets: int | None) -> int | None:
        with self._lock:
            self._layouts[version] = buckets
            while len(self._layouts) > LAYOUTS_CACHED:
                self._layouts.popitem(last=False)
        return buckets

    def write(self, version: str, rows: Iterable[tuple[str, bytes]]) -> int:
        """Write ``(user_id, encoded row)`` pairs; how many. A bucket's rows go in unlogged batches of one
        partition, at most ``BATCH_BYTES`` each, at most ``IN_FLIGHT_BYTES`` (and ``write_concurrency``) in flight."""
        buckets = self.buckets(version)
        if buckets is None:
            return self._cql.write_many(schema.INSERT_USER, ((version, uid, data, self._ttl) for uid, data in rows))
        stmt, written, pending, size = self._cql.stmt(INSERT_ROW), 0, defaultdict(list), 0
        for uid, data in rows:
            pending[user_bucket(uid, buckets)].append((uid, data))
            size += len(data) + len(uid)
            written += 1
            if size >= PENDING_BYTES:
                self._send(stmt, version, pending)
                pending, size = defaultdict(list), 0
        self._send(stmt, version, pending)
        return written

    def _send(self, stmt: Any, version: str, pending: Mapping[int, list[tuple[str, bytes]]]) -> None:
        batches: list[BatchStatement] = []
        total = 0
        for bucket, rows in pending.items():
            batch, size = None, 0
            for uid, data in rows:
                if batch is None or size + len(data) > BATCH_BYTES:
                    batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                    batch.is_idempotent = True  # whole-row upserts: safe for the driver to retry
                    batches.append(batch)
                batch.add(stmt, (version, bucket, uid, data, self._ttl))
                size += len(data) + len(uid)
                total += len(data) + len(uid)
        if batches:  # in flight: about IN_FLIGHT_BYTES of these batches (small ones: write_concurrency)
            self._cql.run_batches(batches, "INSERT user_rows_by_bucket", in_flight=in_flight(len(batches), total))

    def read(self, version: str, user_ids: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """The stored ``(user_id, data)`` of ``user_ids`` (absent users left out): one ``IN`` query per bucket
        and chunk (per replica and chunk in the old layout), all in flight at once."""
        ids = list(dict.fromkeys(user_ids))
        buckets = self.buckets(version)
        if buckets is None:
            return cassandra_fresh.read_user_rows(self._cql, version, ids)
        groups: dict[int, list[str]] = defaultdict(list)
        for uid in ids:
            groups[user_bucket(uid, buckets)].append(uid)
        params = [(version, bucket, chunk) for bucket, group in groups.items() for chunk in _chunks(group)]
        return ((uid, data) for rs in self._cql.many(SELECT_ROWS, params, EXEC_PROFILE_DEFAULT) for uid, data in rs)

    def read_one(self, version: str, user_id: str) -> bytes | None:
        row = self._cql.run(*self._select_one(version, user_id)).one()
        return row[0] if row else None

    def submit(self, version: str, user_ids: Sequence[str]) -> list[ResponseFuture]:
        """One single-row read per user sent without waiting (serving reads one or a few users a request)."""
        return [self._cql.submit(*self._select_one(version, uid)) for uid in user_ids]

    def _select_one(self, version: str, user_id: str) -> tuple[str, tuple[Any, ...]]:
        buckets = self.buckets(version)
        if buckets is None:
            return schema.SELECT_USER, (version, user_id)
        return SELECT_ROW, (version, user_bucket(user_id, buckets), user_id)
