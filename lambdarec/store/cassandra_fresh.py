"""The Cassandra store's fresh-state (and batch-row) reads, batched per poll: a few ``IN`` queries, not one per key.

The speed consumer reads the state of every user and trending shard in a batch (hundreds to thousands of keys a poll).
One request per key costs the driver and the coordinator more than the reads themselves, so keys are grouped
and each group is one prepared ``IN`` query, all groups in flight at once:

* users (one partition each) are grouped by the replica that owns them (token-aware: the same token map the
  driver routes by), so every query reads partitions of one replica set, at most ``IN_KEYS`` keys a query; their
  states are written as unlogged batches of one replica's partitions (routed to that replica), as large as the
  node's batch warning thresholds allow (``CassandraSession.batch_limits``: 4 KiB and 10 partitions at the stock
  thresholds), a larger state on its own, about ``IN_FLIGHT_BYTES`` of batches in flight;
* trending shards are rows of a few bucket partitions, so a query reads one bucket's rows, and the shards of one
  bucket are written as single-partition unlogged batches (one mutation each, at most ``PARTITION_BATCH_BYTES``:
  batches of one partition are exempt from the warning thresholds).

Example
-------
>>> read_fresh_users(cql, "default", ["u1", "u2"])   # doctest: +SKIP
{'u1': FreshUser(user_id='u1', ...)}
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.query import BatchStatement, BatchType
from cassandra.util import min_uuid_from_time, uuid_from_time

from lambdarec.logs import get_logger
from lambdarec.model.erased import shard_users, without_users
from lambdarec.model.rows import FreshUser, ShownItems, TrendingItem
from lambdarec.store import cassandra_schema as schema
from lambdarec.store import changes, codec
from lambdarec.store.cassandra_session import WRITE, CassandraSession
from lambdarec.store.decoded import DecodedStates
from lambdarec.store.erasure import fresh_rows
from lambdarec.store.shown_codec import encode_shown

log = get_logger(__name__)

# rows of one partition per batch (trending shards, a snapshot's user rows): large enough to amortise a request,
# small enough to stay well inside the request timeout on a loaded node; exempt from the batch warnings since
# Cassandra 3.6, and under the 50 KiB failure threshold that older releases applied to every batch
PARTITION_BATCH_BYTES = 48 * 1024
IN_FLIGHT_BYTES = 1024 * 1024  # batches in flight at most: the driver refuses a request ("connection overloaded")
# while its socket's send buffer is full, which a few MiB of large batches to a busy node can fill
MAX_TTL_S = 20 * 365 * 86400  # the largest TTL Cassandra takes
MINUTE_S = 60  # the changes' partitions: one per namespace and minute of their stamps
IN_KEYS = 100  # keys per IN query: large enough to amortise a request, small enough for one page and no timeout
SELECT_FRESH_USERS = "SELECT user_id, data, erasure FROM {ks}.fresh_users WHERE ns = ? AND user_id IN ?"
SELECT_USER_ROWS = "SELECT user_id, data FROM {ks}.user_rows WHERE version = ? AND user_id IN ?"
SELECT_TRENDING_ROWS = "SELECT item_id, data FROM {ks}.trending WHERE ns = ? AND bucket = ? AND item_id IN ?"


def partition_key(*parts: str) -> bytes:
    """The routing key of a composite text partition key, as the token map hashes it (each component: 2-byte
    length, bytes, 0)."""
    out = bytearray()
    for part in parts:
        raw = part.encode()
        out += len(raw).to_bytes(2, "big") + raw + b"\x00"
    return bytes(out)


def by_replica(cql: CassandraSession, ns: str, user_ids: list[str]) -> list[list[str]]:
    """``user_ids`` grouped by the first replica of their partition, keyed ``(ns, user_id)`` (one group on a
    one-node cluster); ``ns`` is the first text component of the key (a namespace, or a snapshot version)."""
    metadata = cql.cluster.metadata
    if len(metadata.all_hosts()) <= 1:
        return [user_ids]
    groups: dict[object, list[str]] = defaultdict(list)
    for uid in user_ids:
        replicas = metadata.get_replicas(cql.keyspace, partition_key(ns, uid))
        groups[replicas[0] if replicas else None].append(uid)
    return list(groups.values())


def in_flight(batches: int, total_bytes: int) -> int:
    """How many of ``batches`` (``total_bytes`` of rows in all) to keep in flight: about ``IN_FLIGHT_BYTES``."""
    return max(1, IN_FLIGHT_BYTES * batches // max(total_bytes, 1))


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    return (keys[i : i + IN_KEYS] for i in range(0, len(keys), IN_KEYS))


def read_fresh_users(
    cql: CassandraSession, ns: str, user_ids: Iterable[str], decoded: DecodedStates[FreshUser] | None = None
) -> dict[str, FreshUser]:
    """The users' fresh state (absent users left out): one ``IN`` query per replica group and chunk; ``decoded``:
    the states decoded before, by their bytes."""
    ids = list(dict.fromkeys(user_ids))
    params = [(ns, chunk) for group in by_replica(cql, ns, ids) for chunk in _chunks(group)]
    results = cql.many(SELECT_FRESH_USERS, params, EXEC_PROFILE_DEFAULT)
    return fresh_rows((row for rs in results for row in rs), decoded)


def submit_fresh_reads(cql: CassandraSession, ns: str, user_ids: list[str]) -> list[Any]:
    """The fresh-state reads of ``user_ids`` (distinct) sent without waiting: one token-aware query for one user,
    else one ``IN`` query per replica group and chunk (serving's requests of one loop turn); the driver's
    futures, whose rows are ``(user_id, data, erasure)``."""
    if len(user_ids) == 1:
        return [cql.submit(schema.SELECT_FRESH_USER, (ns, user_ids[0]))]
    groups = by_replica(cql, ns, user_ids)
    return [cql.submit(SELECT_FRESH_USERS, (ns, chunk)) for group in groups for chunk in _chunks(group)]


def read_user_rows(cql: CassandraSession, version: str, user_ids: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """The stored batch rows of ``user_ids`` in snapshot ``version`` (absent users left out), undecoded: one ``IN``
    query per replica group and chunk, as for fresh state (the speed layer reads a poll's users at once)."""
    ids = list(dict.fromkeys(user_ids))
    params = [(version, chunk) for group in by_replica(cql, version, ids) for chunk in _chunks(group)]
    return ((uid, data) for rs in cql.many(SELECT_USER_ROWS, params, EXEC_PROFILE_DEFAULT) for uid, data in rs)


def read_trending(cql: CassandraSession, ns: str, keys: Iterable[str] | None) -> dict[str, TrendingItem]:
    """The trending shards stored under ``keys`` (every live one for None): one ``IN`` query per bucket partition
    and chunk (a bucket's rows for None); then, where brand-new items' shards name users, which of them are listed
    as erased, left out of the shards."""
    if keys is None:
        results = cql.many(schema.SELECT_TRENDING_BUCKET, [(ns, b) for b in range(schema.TRENDING_BUCKETS)],
                           EXEC_PROFILE_DEFAULT)  # fmt: skip
    else:
        buckets: dict[int, list[str]] = defaultdict(list)
        for key in dict.fromkeys(keys):
            buckets[schema.trending_bucket(key)].append(key)
        params = [(ns, bucket, chunk) for bucket, group in buckets.items() for chunk in _chunks(group)]
        results = cql.many(SELECT_TRENDING_ROWS, params, EXEC_PROFILE_DEFAULT)
    shards = {item_id: codec.decode_trending(data) for rs in results for item_id, data in rs}
    if not (users := shard_users(shards)):
        return shards
    listed = cql.many(schema.SELECT_ERASED_USERS, [(ns, chunk) for chunk in _chunks(users)], EXEC_PROFILE_DEFAULT)
    return without_users(shards.items(), {uid for rs in listed for (uid,) in rs})


def write_trending(cql: CassandraSession, ns: str, items: Iterable[TrendingItem], ttl_s: int) -> int:
    """Upsert trending shards: one unlogged batch per bucket partition (and per ``PARTITION_BATCH_BYTES``), about
    ``IN_FLIGHT_BYTES`` of them in flight. Rows of one partition in one batch are one mutation: no cross-partition
    batch, no batch log."""
    stmt = cql.stmt(schema.UPSERT_TRENDING)
    batches: list[BatchStatement] = []
    open_batches: dict[int, tuple[BatchStatement, int]] = {}
    written = total = 0
    for item in items:
        key, data = item.key, codec.encode_fresh(item)
        bucket = schema.trending_bucket(key)
        batch, size = open_batches.get(bucket, (None, 0))
        if batch is None or size + len(data) > PARTITION_BATCH_BYTES:
            batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
            batch.is_idempotent = True  # an upsert of whole rows: safe for the driver to retry
            batches.append(batch)
        batch.add(stmt, (ns, bucket, key, data, ttl_s))
        open_batches[bucket] = (batch, size + len(data) + len(key))
        written += 1
        total += len(data) + len(key)
    if batches:
        cql.run_batches(batches, "UPSERT trending", in_flight=in_flight(len(batches), total))
    return written


def write_fresh_users(cql: CassandraSession, ns: str, states: Iterable[FreshUser], ttl_s: int) -> int:
    """Upsert users' fresh state: states in unlogged batches of one replica's partitions, as large as the node's
    warning thresholds allow (the coordinator is that replica: no cross-node batch), about ``IN_FLIGHT_BYTES`` of
    them in flight; a state over the batch size alone."""
    stmt = cql.stmt(schema.UPSERT_FRESH_USER)
    limits = cql.batch_limits
    encoded = {s.user_id: codec.encode_fresh(s) for s in states}
    large = [(ns, uid, data, ttl_s) for uid, data in encoded.items() if len(data) + len(uid) > limits.bytes]
    batches: list[BatchStatement] = []
    total = 0
    for group in by_replica(cql, ns, [uid for uid, data in encoded.items() if len(data) + len(uid) <= limits.bytes]):
        batch, size = None, 0
        for uid in group:
            data = encoded[uid]
            if batch is None or size + len(data) + len(uid) > limits.bytes or len(batch) >= limits.partitions:
                batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                batch.is_idempotent = True  # whole-row upserts: safe for the driver to retry
                batches.append(batch)
            batch.add(stmt, (ns, uid, data, ttl_s))
            size += len(data) + len(uid)
            total += len(data) + len(uid)
    if batches:
        cql.run_batches(batches, "UPSERT fresh_users", in_flight=in_flight(len(batches), total))
    if large:
        cql.write_many(schema.UPSERT_FRESH_USER, large)
    write_changes(cql, ns, list(encoded))
    return len(encoded)


def write_changes(cql: CassandraSession, ns: str, user_ids: list[str]) -> None:
    """List ``user_ids`` as changed (:mod:`lambdarec.store.changes`), after their states are written: one row per
    ``USERS_PER_ROW`` users, stamped with this clock as each is sent, and sent again under a new stamp while its
    write is acknowledged later than ``LANDED_WITHIN_S`` after its stamp (readers re-read that window)."""
    for users in changes.rows_of(user_ids):
        data = changes.encode_users(users)
        for tries in range(1, changes.RELIST_TRIES + 1):
            stamped = time.time()
            row = (ns, int(stamped // MINUTE_S), uuid_from_time(stamped), data, changes.CHANGES_TTL_S)
            cql.run(schema.INSERT_CHANGE, row, WRITE)
            took = time.time() - stamped
            if took <= changes.LANDED_WITHIN_S:
                break
            log.warning("store.change_listed_late", users=len(users), took_s=round(took, 3), tries=tries,
                        effect="listed again under a new stamp" if tries < changes.RELIST_TRIES else
                        "left as written: a reader may keep the old states until they expire")  # fmt: skip


def submit_changes_read(cql: CassandraSession, ns: str, after_s: float, now_s: float) -> Any:
    """The changes stamped after ``after_s`` sent without waiting: one query over the minute partitions from the
    one before ``after_s`` to the one after ``now_s`` (writers' clocks may be a little apart); the driver's
    future, whose rows are ``(at, users)``."""
    minutes = list(range(int(after_s // MINUTE_S) - 1, int(now_s // MINUTE_S) + 2))
    return cql.submit(schema.SELECT_CHANGES, (ns, minutes, min_uuid_from_time(after_s)))


def write_shown(cql: CassandraSession, ns: str, rows: Iterable[ShownItems], ttl_s: int) -> int:
    """Upsert users' impressions rows (``data`` only: their ``erasure`` stays), one request each."""
    return cql.write_many(schema.UPSERT_SHOWN, ((ns, r.user_id, encode_shown(r), ttl_s) for r in rows))


def write_erasures(
    cql: CassandraSession, ns: str, users: Sequence[FreshUser], shown: Sequence[ShownItems], ttl_s: int, *, rows: bool
) -> int:
    """Each tombstone as the row (not with ``rows=False``: an existing row stays) and as its ``erasure``, and the
    users listed as erased (``OnlineStore.write_erasures``), for twice the fresh TTL: the erasure outlives any row
    a consumer wrote from a state read before it (at most Cassandra's 20-year TTL)."""
    ttl = min(2 * ttl_s, MAX_TTL_S)
    fresh = [(u.user_id, codec.encode_fresh(u)) for u in users]
    impressions = [(r.user_id, encode_shown(r)) for r in shown]
    if rows:
        cql.write_many(schema.ERASE_FRESH_USER, [(ns, uid, data, data, ttl) for uid, data in fresh])
        cql.write_many(schema.ERASE_SHOWN, [(ns, uid, data, data, ttl) for uid, data in impressions])
    else:
        cql.write_many(schema.REERASE_FRESH_USER, [(ttl, data, ns, uid) for uid, data in fresh])
        cql.write_many(schema.REERASE_SHOWN, [(ttl, data, ns, uid) for uid, data in impressions])
    cql.write_many(schema.LIST_ERASED_USER, [(ns, u.user_id, u.erasure_seen, ttl) for u in users])
    write_changes(cql, ns, [u.user_id for u in users])
    return len(users)
