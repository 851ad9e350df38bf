"""The SQLite store's files and tables: two database files in one directory, rows keyed ``(version, key)`` in
WITHOUT ROWID tables, so a serving read is one b-tree lookup.

``snapshots.sqlite`` holds snapshot metadata, the current pointer, rows, arrays and locks; ``fresh.sqlite`` the
speed layer's state, so the batch layer's large write transactions never delay the speed layer's small ones;
``shown.sqlite`` the impressions consumer's rows, so its writes never delay the positive-event consumer's.

Example
-------
>>> store_dir("sqlite:////var/lib/lambdarec/store")
PosixPath('/var/lib/lambdarec/store')
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from lambdarec.masking import mask_url

SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (version TEXT PRIMARY KEY, ns TEXT NOT NULL, state TEXT NOT NULL,
  created_at REAL NOT NULL, published_at REAL, meta TEXT NOT NULL, manifest TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_ns ON snapshots (ns, created_at);
CREATE TABLE IF NOT EXISTS pointer (ns TEXT PRIMARY KEY, version TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (version TEXT, user_id TEXT, data BLOB NOT NULL,
  PRIMARY KEY (version, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (version TEXT, item INTEGER, data BLOB NOT NULL,
  PRIMARY KEY (version, item)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS arrays (version TEXT, name TEXT, chunks INTEGER NOT NULL, nbytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL, PRIMARY KEY (version, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS array_chunks (version TEXT, name TEXT, chunk INTEGER, data BLOB NOT NULL,
  PRIMARY KEY (version, name, chunk));
CREATE TABLE IF NOT EXISTS locks (ns TEXT, name TEXT, owner TEXT NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, name)) WITHOUT ROWID;
"""
# trending.item_id holds TrendingItem.key: the item id, or item_id@partition for a per-partition shard.
FRESH_SCHEMA = """
CREATE TABLE IF NOT EXISTS fresh_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  erasure BLOB, PRIMARY KEY (ns, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trending (ns TEXT, item_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, item_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_ids (ns TEXT, event_id TEXT, part INTEGER NOT NULL, pos INTEGER NOT NULL,
  expires_at REAL NOT NULL, PRIMARY KEY (ns, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_ids_expiry ON event_ids (ns, expires_at);
CREATE TABLE IF NOT EXISTS shown_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, user_id)) WITHOUT ROWID;
"""  # + ERASED_USERS_SCHEMA, below
# The users `forget` erased lately, left out of brand-new items' shards on read (lambdarec.model.erased)
ERASED_USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS erased_users (ns TEXT, user_id TEXT, erased_at REAL NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY (ns, user_id)) WITHOUT ROWID;
"""
FRESH_SCHEMA += ERASED_USERS_SCHEMA
WRITE_ERASED_USER = "INSERT OR REPLACE INTO erased_users (ns, user_id, erased_at, expires_at) VALUES (?, ?, ?, ?)"
SELECT_ERASED_USERS = "SELECT user_id FROM erased_users WHERE ns = ? AND expires_at > ? AND user_id IN ({})"
# A claim is taken unless a live one holds the id; an expired one is taken over in place.
CLAIM_EVENT_ID = (
    "INSERT INTO event_ids (ns, event_id, part, pos, expires_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (ns, event_id) DO UPDATE SET part = excluded.part, pos = excluded.pos, "
    "expires_at = excluded.expires_at WHERE event_ids.expires_at <= ?"
)
SELECT_EVENT_IDS = "SELECT event_id, part, pos FROM event_ids WHERE ns = ? AND event_id IN ({})"
SELECT_LIVE_EVENT_IDS = "SELECT event_id, part, pos FROM event_ids WHERE ns = ? AND expires_at > ? AND event_id IN ({})"
RELEASE_EVENT_ID = "DELETE FROM event_ids WHERE ns = ? AND event_id = ? AND part = ? AND pos = ?"
DROP_EXPIRED_EVENT_IDS = "DELETE FROM event_ids WHERE ns = ? AND expires_at <= ?"
EVENT_ID_SWEEP_S = 60.0  # how often claiming also deletes expired claims
SNAPSHOTS_FILE, FRESH_FILE = "snapshots.sqlite", "fresh.sqlite"
# The impressions consumer's rows (ten times the click volume) in a file of their own: the positive-event
# consumer's writes to fresh.sqlite never queue behind its transactions nor pay its write-ahead log's checkpoints.
# (fresh.sqlite keeps its old shown_users table: rows found there are moved here on open.)
SHOWN_FILE = "shown.sqlite"
SHOWN_SCHEMA = """
CREATE TABLE IF NOT EXISTS shown_users (ns TEXT, user_id TEXT, data BLOB NOT NULL, expires_at REAL NOT NULL,
  erasure BLOB, PRIMARY KEY (ns, user_id)) WITHOUT ROWID;
"""  # + CLAIMS_SCHEMA (impressions' claims), below
# Event-id claims of every event but impressions in a file of their own: in fresh.sqlite the positive-event
# consumer's state writes queued behind the claims' transactions and paid their write-ahead log's checkpoints.
# (fresh.sqlite keeps its old event_ids table: live claims found there are moved here on open.) Impressions' claims
# (scope "impressions", ten times the click volume) live in shown.sqlite, beside their rows: the impressions consumer
# and the positive-event consumer then share no file they write.
CLAIMS_FILE = "claims.sqlite"
CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_ids (ns TEXT, event_id TEXT, part INTEGER NOT NULL, pos INTEGER NOT NULL,
  expires_at REAL NOT NULL, PRIMARY KEY (ns, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_ids_expiry ON event_ids (ns, expires_at);
"""
SHOWN_SCHEMA += CLAIMS_SCHEMA
# (file, table) whose rows carry `erasure` (lambdarec.store.erasure); added to files an older release created
ERASABLE: tuple[tuple[Literal["fresh", "shown"], str], ...] = (("fresh", "fresh_users"), ("shown", "shown_users"))
# A consumer's write replaces the row but keeps its erasure, unless the row had expired (and with it the erasure).
UPSERT_ERASABLE = (
    "INSERT INTO {table} (ns, user_id, data, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (ns, user_id) DO UPDATE "
    "SET data = excluded.data, expires_at = excluded.expires_at, "
    "erasure = CASE WHEN {table}.expires_at > ? THEN {table}.erasure END"
)
WRITE_ERASURE = "INSERT OR REPLACE INTO {table} (ns, user_id, data, expires_at, erasure) VALUES (?, ?, ?, ?, ?)"
# the erasure written again: a live row keeps its data and expiry; an absent (or expired) one becomes the tombstone
WRITE_ERASURE_ONLY = (
    "INSERT INTO {table} (ns, user_id, data, expires_at, erasure) VALUES (?, ?, ?, ?, ?) ON CONFLICT (ns, user_id) "
    "DO UPDATE SET erasure = excluded.erasure, "
    "data = CASE WHEN {table}.expires_at > ? THEN {table}.data ELSE excluded.data END, "
    "expires_at = MAX({table}.expires_at, excluded.expires_at)"
)
# When this release first opened the store: the last expiry of the claims claims.sqlite then held (an older
# release claimed impressions there too), 0 where it held none. Until then an impression's new claim in
# shown.sqlite also defers to a live one of the same id in claims.sqlite, so one resent across the upgrade is
# still applied once. Kept in claims.sqlite, so a shown.sqlite deleted (to reset fatigue) opens no new window.
CLAIM_SCOPES_SCHEMA = "CREATE TABLE claim_scopes (id INTEGER PRIMARY KEY CHECK (id = 0), legacy_until REAL NOT NULL)"
# 16 KiB pages keep a 2 KiB user row inside its b-tree page (4 KiB pages spill it to overflow pages: half the
# write rate, twice the file); page_size only takes effect on a new file. A 64 MiB WAL between checkpoints
# (4000 pages) spares a bulk write most checkpoint fsyncs. The memory map (store.sqlite.mmap_mb,
# store.sqlite.fresh_mmap_mb) is set per connection by `Connections`.
PRAGMAS = "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=4000;"


def store_dir(url: str) -> Path:
    """The directory a ``sqlite:///relative/dir`` or ``sqlite:////absolute/dir`` URL names."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or len(parts.path) < 2:
        raise ValueError(f"store URL {mask_url(url)!r}: expected sqlite:///relative/dir or sqlite:////absolute/dir")
    return Path(parts.path[1:])


def missing_files(url: str) -> list[Path]:
    """The database files of the store at ``url`` that do not exist (all of them when the directory is absent)."""
    path = store_dir(url)
    return [path / name for name in (SNAPSHOTS_FILE, FRESH_FILE) if not (path / name).is_file()]
