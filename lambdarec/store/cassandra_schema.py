"""The Cassandra store's URL, keyspace and tables (``lambdarec store init`` runs :data:`TABLES`).

Data model, for a reader who knows Cassandra:

* one row per (version, user) holding the whole candidate list as one blob: a shorter list next night is a new
  row under a new version, never a shrunk collection, so no tombstones;
* per-item rows and trending counters live in a fixed number of bucket partitions, so "all items" is a handful
  of single-partition queries, never a scan without a partition key;
* row counts for validation come from per-``part`` tallies, never from counting rows;
* ``trending.item_id`` holds ``TrendingItem.key`` (``item_id`` or ``item_id@partition`` for a shard), bucketed
  by a stable hash of that key;
* event-id claims live in ``EVENT_ID_BUCKETS`` partitions per namespace, so a poll claims its ids with one
  conditional batch (one Paxos round) per bucket rather than one lightweight transaction per id;
* snapshot tables expire by their default TTL (longer than two batch periods), so retired versions disappear
  without deletes; the snapshot list, the current pointer and locks are tiny tables without TTL.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cassandra import ConsistencyLevel

from lambdarec.logs import get_logger
from lambdarec.masking import mask_url
from lambdarec.settings import StoreSettings
from lambdarec.store.changes import CHANGES_TTL_S

log = get_logger(__name__)

DEFAULT_PORT = 9042
# Fixed by the data layout: changing either makes rows written before unreachable.
ITEM_BUCKETS = 64
TRENDING_BUCKETS = 16
EVENT_ID_BUCKETS = 64  # event-id claims: one conditional batch per bucket and poll (see cassandra_claims)
# Fresh tables only ever expire by TTL (no deletes), so tombstones need not outlive a repair cycle.
FRESH_GC_GRACE_S = 3600
DEFAULT_GC_GRACE_S = 864000  # Cassandra's own default, kept for snapshot tables
DDL_TIMEOUT_S = 120.0  # schema changes wait for every node to agree

_KEYSPACE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


@dataclass(frozen=True)
class CassandraURL:
    """The parts of ``cassandra://[user:password@]h1,h2[:port]/keyspace[?dc=NAME]``."""

    hosts: tuple[str, ...]
    port: int
    keyspace: str
    dc: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def where(self) -> str:
        """The hosts and port, for error messages."""
        return f"{','.join(self.hosts)}:{self.port}"


def credentials(settings: StoreSettings, url: CassandraURL) -> tuple[str | None, str | None]:
    """The user name and password to log in with: ``store.cassandra.username``/``password`` where set, else the
    URL's (both drivers use this one rule)."""
    backend = settings.cassandra
    password = backend.password.get_secret_value() if backend.password else url.password
    return backend.username or url.username, password


def parse_url(url: str) -> CassandraURL:
    """Split a store URL; a ``ValueError`` names what is wrong and shows the expected form."""
    form = "expected cassandra://host1,host2:9042/keyspace?dc=DATACENTER"
    parts = urlsplit(url)
    if parts.scheme != "cassandra":
        raise ValueError(f"store URL {mask_url(url)!r} is not a cassandra:// URL; {form}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts, ports = [], set()
    for entry in filter(None, hostlist.split(",")):
        host, sep, port = entry.rpartition(":") if not entry.endswith("]") else (entry, "", "")
        if sep and not port.isdigit():
            raise ValueError(f"store URL {mask_url(url)!r}: port {port!r} of {entry!r} is not a number; {form}")
        hosts.append((host if sep else entry).strip("[]"))
        ports.add(int(port) if sep else None)
    ports.discard(None)
    if not hosts:
        raise ValueError(f"store URL {mask_url(url)!r} names no host; {form}")
    if len(ports) > 1:
        raise ValueError(f"store URL {mask_url(url)!r}: every host must use the same port; got {sorted(ports)}; {form}")
    keyspace = parts.path.strip("/")
    if not _KEYSPACE.match(keyspace):
        raise ValueError(
            f"store URL {mask_url(url)!r}: keyspace {keyspace!r} must be a letter then up to 47 letters, digits "
            f"or '_'; {form}"
        )
    dc = parse_qs(parts.query).get("dc", [None])[0]
    return CassandraURL(
        tuple(hosts),
        ports.pop() if ports else DEFAULT_PORT,
        keyspace,
        dc,
        unquote(user) or None,
        unquote(password) or None,
    )


def replication_cql(replication: dict[str, int]) -> str:
    """``{'replication_factor': 3}`` -> SimpleStrategy; ``{'dc1': 3, 'dc2': 2}`` -> NetworkTopologyStrategy."""
    if set(replication) == {"replication_factor"}:
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {int(replication['replication_factor'])}}}"
    if not replication or "replication_factor" in replication:
        raise ValueError(
            f"store.cassandra.replication {replication!r}: give {{replication_factor = N}} or a map of datacenter "
            "to replicas"
        )
    bad = [dc for dc in replication if not re.fullmatch(r"[A-Za-z0-9_.\-]+", dc)]
    if bad:
        raise ValueError(
            f"store.cassandra.replication: datacenter names {bad!r} may hold only letters, digits, '_', '.', '-'"
        )
    dcs = ", ".join(f"'{dc}': {int(n)}" for dc, n in sorted(replication.items()))
    return f"{{'class': 'NetworkTopologyStrategy', {dcs}}}"


def consistency(name: str, setting: str) -> int:
    """The driver's value of a consistency level named in ``store.cassandra.<setting>``."""
    try:
        return ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise ValueError(
            f"store.cassandra.{setting} {name!r} is not a consistency level; use one of LOCAL_ONE, LOCAL_QUORUM, "
            "QUORUM, ..."
        ) from None


def describe(cql: str) -> str:
    """``INSERT user_rows``: enough to tell which request failed."""
    table = re.search(r"\{ks\}\.(\w+)", cql)
    return cql.split(" ", 1)[0] + (f" {table.group(1)}" if table else "")


def item_bucket(item: int) -> int:
    return item % ITEM_BUCKETS


def trending_bucket(item_id: str) -> int:
    # crc32, not hash(): the bucket must be the same in every process.
    return zlib.crc32(item_id.encode()) % TRENDING_BUCKETS


def event_id_bucket(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % EVENT_ID_BUCKETS


# ---- requests, prepared by CassandraStore._stmt (``{ks}`` is the keyspace) ----------------------------------
# Writes to TTL tables say their TTL (from the settings in force) instead of trusting the table default, which
# is only as fresh as the last `store init`.

INSERT_SNAPSHOT = "INSERT INTO {ks}.snapshots (ns, version, state, created_at, meta) VALUES (?, ?, 'writing', ?, ?)"
SNAPSHOT_COLUMNS = "SELECT version, state, created_at, published_at, meta, manifest FROM {ks}.snapshots"
SELECT_SNAPSHOT = SNAPSHOT_COLUMNS + " WHERE ns = ? AND version = ?"
SELECT_SNAPSHOTS = SNAPSHOT_COLUMNS + " WHERE ns = ?"
SET_STATE = "UPDATE {ks}.snapshots SET state = ? WHERE ns = ? AND version = ?"
MARK_PUBLISHED = (
    "UPDATE {ks}.snapshots SET state = 'published', published_at = ?, manifest = ? WHERE ns = ? AND version = ?"
)
SET_POINTER = "INSERT INTO {ks}.pointer (ns, version) VALUES (?, ?)"
SELECT_POINTER = "SELECT version FROM {ks}.pointer WHERE ns = ?"
INSERT_USER = "INSERT INTO {ks}.user_rows (version, user_id, data) VALUES (?, ?, ?) USING TTL ?"
SELECT_USER = "SELECT data FROM {ks}.user_rows WHERE version = ? AND user_id = ?"
INSERT_ITEM = "INSERT INTO {ks}.item_rows (version, bucket, item, data) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_ITEM = "SELECT item, data FROM {ks}.item_rows WHERE version = ? AND bucket = ? AND item = ?"
SELECT_ITEM_BUCKET = "SELECT item, data FROM {ks}.item_rows WHERE version = ? AND bucket = ?"
INSERT_PART = "INSERT INTO {ks}.parts (version, kind, part, rows) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_PARTS = "SELECT kind, rows FROM {ks}.parts WHERE version = ?"
INSERT_ARRAY = "INSERT INTO {ks}.arrays (version, name, chunks, nbytes, sha256) VALUES (?, ?, ?, ?, ?) USING TTL ?"
SELECT_ARRAY = "SELECT chunks, sha256 FROM {ks}.arrays WHERE version = ? AND name = ?"
SELECT_ARRAY_NAMES = "SELECT name FROM {ks}.arrays WHERE version = ?"
INSERT_CHUNK = "INSERT INTO {ks}.array_chunks (version, name, chunk, data) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_CHUNKS = "SELECT data FROM {ks}.array_chunks WHERE version = ? AND name = ? AND chunk < ?"
# a consumer's write names `data` only: the row's `erasure`, written by `forget` alone, stays (store.erasure)
UPSERT_FRESH_USER = "INSERT INTO {ks}.fresh_users (ns, user_id, data) VALUES (?, ?, ?) USING TTL ?"
SELECT_FRESH_USER = "SELECT user_id, data, erasure FROM {ks}.fresh_users WHERE ns = ? AND user_id = ?"
ERASE_FRESH_USER = "INSERT INTO {ks}.fresh_users (ns, user_id, data, erasure) VALUES (?, ?, ?, ?) USING TTL ?"
INSERT_CHANGE = "INSERT INTO {ks}.fresh_changes (ns, minute, at, users) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_CHANGES = "SELECT at, users FROM {ks}.fresh_changes WHERE ns = ? AND minute IN ? AND at > ?"
UPSERT_TRENDING = "INSERT INTO {ks}.trending (ns, bucket, item_id, data) VALUES (?, ?, ?, ?) USING TTL ?"
SELECT_TRENDING = "SELECT item_id, data FROM {ks}.trending WHERE ns = ? AND bucket = ? AND item_id = ?"
SELECT_TRENDING_BUCKET = "SELECT item_id, data FROM {ks}.trending WHERE ns = ? AND bucket = ?"
UPSERT_SHOWN = "INSERT INTO {ks}.shown_users (ns, user_id, data) VALUES (?, ?, ?) USING TTL ?"
SELECT_SHOWN = "SELECT user_id, data, erasure FROM {ks}.shown_users WHERE ns = ? AND user_id = ?"
ERASE_SHOWN = "INSERT INTO {ks}.shown_users (ns, user_id, data, erasure) VALUES (?, ?, ?, ?) USING TTL ?"
REERASE_FRESH_USER = "UPDATE {ks}.fresh_users USING TTL ? SET erasure = ? WHERE ns = ? AND user_id = ?"
REERASE_SHOWN = "UPDATE {ks}.shown_users USING TTL ? SET erasure = ? WHERE ns = ? AND user_id = ?"
LIST_ERASED_USER = "INSERT INTO {ks}.erased_users (ns, user_id, erased_at) VALUES (?, ?, ?) USING TTL ?"
SELECT_ERASED_USERS = "SELECT user_id FROM {ks}.erased_users WHERE ns = ? AND user_id IN ?"
TAKE_LOCK = "INSERT INTO {ks}.locks (ns, name, owner) VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?"
RENEW_LOCK = "UPDATE {ks}.locks USING TTL ? SET owner = ? WHERE ns = ? AND name = ? IF owner = ?"
RELEASE_LOCK = "DELETE FROM {ks}.locks WHERE ns = ? AND name = ? IF owner = ?"
SELECT_LOCK = "SELECT owner, TTL(owner) FROM {ks}.locks WHERE ns = ? AND name = ?"
CLAIM_EVENT_ID = (
    "INSERT INTO {ks}.event_claims (ns, bucket, event_id, part, pos) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
)
RELEASE_EVENT_ID = "DELETE FROM {ks}.event_claims WHERE ns = ? AND bucket = ? AND event_id = ? IF part=? AND pos=?"
PUT_MARK = "INSERT INTO {ks}.locks (ns, name, owner) VALUES (?, ?, ?) IF NOT EXISTS"  # a row of `locks` for good
LWT = (TAKE_LOCK, RENEW_LOCK, RELEASE_LOCK, CLAIM_EVENT_ID, RELEASE_EVENT_ID, PUT_MARK)

# ---- schema, run by CassandraStore.init_schema -------------------------------------------------------------

CREATE_KEYSPACE = "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"
DROP_KEYSPACE = "DROP KEYSPACE IF EXISTS {ks}"

# (table, TTL setting or None, CREATE statement). Snapshot tables take `snapshot_ttl_s`, fresh ones `fresh_ttl_s`.
TABLES: tuple[tuple[str, str | None, str], ...] = (
    ("snapshots", None, "CREATE TABLE IF NOT EXISTS {ks}.snapshots (ns text, version text, state text, "
     "created_at timestamp, published_at timestamp, meta text, manifest text, PRIMARY KEY (ns, version)) "
     "WITH CLUSTERING ORDER BY (version DESC)"),
    ("pointer", None, "CREATE TABLE IF NOT EXISTS {ks}.pointer (ns text PRIMARY KEY, version text)"),
    ("locks", None, "CREATE TABLE IF NOT EXISTS {ks}.locks (ns text, name text, owner text, "
     "PRIMARY KEY ((ns, name)))"),
    # one partition per user: snapshots begun before user_rows_by_bucket (read, never written by new versions)
    ("user_rows", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.user_rows (version text, user_id text, "
     "data blob, PRIMARY KEY ((version, user_id)))"),
    # a snapshot's users in bucket partitions (cassandra_users), and each version's bucket count
    ("user_rows_by_bucket", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.user_rows_by_bucket (version text, "
     "bucket int, user_id text, data blob, PRIMARY KEY ((version, bucket), user_id))"),
    ("user_row_layout", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.user_row_layout (version text PRIMARY KEY, "
     "buckets int)"),
    ("item_rows", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.item_rows (version text, bucket int, "
     "item int, data blob, PRIMARY KEY ((version, bucket), item))"),
    ("arrays", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.arrays (version text, name text, chunks int, "
     "nbytes bigint, sha256 text, PRIMARY KEY (version, name))"),
    ("array_chunks", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.array_chunks (version text, name text, "
     "chunk int, data blob, PRIMARY KEY ((version, name), chunk))"),
    ("parts", "snapshot_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.parts (version text, kind text, part text, "
     "rows int, PRIMARY KEY (version, kind, part))"),
    ("fresh_users", "fresh_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.fresh_users (ns text, user_id text, "
     "data blob, erasure blob, PRIMARY KEY ((ns, user_id)))"),
    ("trending", "fresh_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.trending (ns text, bucket int, item_id text, "
     "data blob, PRIMARY KEY ((ns, bucket), item_id))"),
    # EVENT_ID_BUCKETS partitions of claims: one conditional batch claims a poll's ids of one bucket for their
    # log positions, for a TTL (it replaces `event_ids`, one partition per id; `store init` copies its claims)
    ("event_claims", "fresh_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.event_claims (ns text, bucket int, "
     "event_id text, part int, pos bigint, PRIMARY KEY ((ns, bucket), event_id))"),
    # a user's impressions, written by the impressions consumer only (speed.feedback.own_consumer)
    ("shown_users", "fresh_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.shown_users (ns text, user_id text, "
     "data blob, erasure blob, PRIMARY KEY ((ns, user_id)))"),
    # the users `forget` erased lately (twice the fresh TTL), left out of brand-new items' shards on read
    ("erased_users", "fresh_ttl_s", "CREATE TABLE IF NOT EXISTS {ks}.erased_users (ns text, user_id text, "
     "erased_at double, PRIMARY KEY (ns, user_id))"),
    # which users' fresh state each write changed (lambdarec.store.changes), by the minute of its stamp: serving
    # reads a state again once it is listed here (serving.fresh_state_keep), not on every request
    ("fresh_changes", None, "CREATE TABLE IF NOT EXISTS {ks}.fresh_changes (ns text, minute bigint, at timeuuid, "
     f"users blob, PRIMARY KEY ((ns, minute), at)) WITH default_time_to_live = {CHANGES_TTL_S} "
     f"AND gc_grace_seconds = {FRESH_GC_GRACE_S}"),
)  # fmt: skip
# (table, column, type) added since the table was first released: `store init` adds them to older keyspaces
ADDED_COLUMNS = (("fresh_users", "erasure", "blob"), ("shown_users", "erasure", "blob"))
SELECT_COLUMNS = "SELECT table_name, column_name FROM system_schema.columns WHERE keyspace_name = ?"
ADD_COLUMN = "ALTER TABLE {ks}.{table} ADD {column} {type}"

SELECT_TABLE_OPTIONS = (
    "SELECT table_name, default_time_to_live, gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = ?"
)
ALTER_TABLE_OPTIONS = "ALTER TABLE {ks}.{table} WITH default_time_to_live = {ttl} AND gc_grace_seconds = {grace}"


def table_options(settings: StoreSettings, ttl_setting: str | None) -> tuple[int, int] | None:
    """(default TTL, gc grace) a table should have, or None for tables without TTL."""
    if ttl_setting is None:
        return None
    grace = FRESH_GC_GRACE_S if ttl_setting == "fresh_ttl_s" else DEFAULT_GC_GRACE_S
    return int(getattr(settings, ttl_setting)), grace


def create(session: Any, keyspace: str, settings: StoreSettings) -> None:
    """Create the keyspace and tables if absent, and give TTL tables the TTLs ``settings`` ask for."""
    replication = replication_cql(settings.cassandra.replication)
    session.execute(CREATE_KEYSPACE.format(ks=keyspace, replication=replication), timeout=DDL_TIMEOUT_S)
    for _, _, ddl in TABLES:
        session.execute(ddl.format(ks=keyspace), timeout=DDL_TIMEOUT_S)
    options = session.prepare(SELECT_TABLE_OPTIONS)
    have = {row[0]: (row[1], row[2]) for row in session.execute(options, (keyspace,))}
    for table, ttl_setting, _ in TABLES:
        want = table_options(settings, ttl_setting)
        if want and have.get(table) != want:
            alter = ALTER_TABLE_OPTIONS.format(ks=keyspace, table=table, ttl=want[0], grace=want[1])
            session.execute(alter, timeout=DDL_TIMEOUT_S)
    columns = {tuple(row) for row in session.execute(session.prepare(SELECT_COLUMNS), (keyspace,))}
    for table, column, kind in ADDED_COLUMNS:
        if (table, column) not in columns:
            add = ADD_COLUMN.format(ks=keyspace, table=table, column=column, type=kind)
            session.execute(add, timeout=DDL_TIMEOUT_S)
            log.info("store.column_added", backend="cassandra", keyspace=keyspace, table=table, column=column)
    log.info("store.initialised", backend="cassandra", keyspace=keyspace, replication=replication)


def drop(session: Any, keyspace: str) -> None:
    """Drop the keyspace with every namespace and row in it (``OnlineStore.drop_schema``)."""
    session.execute(DROP_KEYSPACE.format(ks=keyspace), timeout=DDL_TIMEOUT_S)
    log.info("store.dropped", backend="cassandra", keyspace=keyspace)
