"""The SQLite store's fresh state (``fresh.sqlite``): the speed layer's per-user state and trending shards, and
its event-id claims (in ``claims.sqlite``; the impressions consumer's rows and its claims in ``shown.sqlite``, so
neither delays the positive-event consumer's state writes),
each row with its expiry time; expired rows are invisible at once and deleted by ``prune``.

Example
-------
>>> fresh = FreshTables(Connections(path, settings), settings)   # doctest: +SKIP
>>> fresh.write_users([FreshUser(user_id="u1")])                 # doctest: +SKIP
1
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

from lambdarec.model.erased import shard_users, without_users
from lambdarec.model.rows import FreshUser, LogPosition, ShownItems, TrendingItem
from lambdarec.settings import StoreSettings
from lambdarec.store import codec
from lambdarec.store.coordination import ClaimScope
from lambdarec.store.decoded import DecodedStates
from lambdarec.store.erasure import Row, fresh_rows, shown_rows
from lambdarec.store.shown_codec import encode_shown
from lambdarec.store.sqlite_files import Connections, Which, select_in
from lambdarec.store.sqlite_schema import (
    CLAIM_EVENT_ID,
    DROP_EXPIRED_EVENT_IDS,
    EVENT_ID_SWEEP_S,
    RELEASE_EVENT_ID,
    SELECT_ERASED_USERS,
    SELECT_EVENT_IDS,
    SELECT_LIVE_EVENT_IDS,
    UPSERT_ERASABLE,
    WRITE_ERASED_USER,
    WRITE_ERASURE,
    WRITE_ERASURE_ONLY,
)

# when a namespace's repeated ids may be looked up in users' states alone (OnlineStore.state_dedup_from)
STATE_DEDUP_SCHEMA = "CREATE TABLE IF NOT EXISTS state_dedup (ns TEXT PRIMARY KEY, since REAL NOT NULL)"
SELECT_STATE_DEDUP = "SELECT since FROM state_dedup WHERE ns = ?"
NEWEST_LIVE_CLAIM = "SELECT MAX(expires_at) FROM event_ids WHERE ns = ? AND expires_at > ?"
CLAIMS_OF: dict[ClaimScope, Which] = {"events": "claims", "impressions": "shown"}  # the file of each scope's claims


class FreshTables:
    """Fresh state of one namespace, with ``settings.fresh_ttl_s`` as every row's time to live."""

    def __init__(self, files: Connections, settings: StoreSettings):
        self._files = files
        self._ns = settings.namespace
        self._ttl_s = settings.fresh_ttl_s
        self._event_ids_swept: dict[ClaimScope, float] = {"events": 0.0, "impressions": 0.0}
        self._legacy_until: float | None = None  # until when an impression defers to claims.sqlite (read once)
        # This process's writers (the speed consumer's writer thread, its claims) queue here: SQLite's busy
        # handler would make them sleep and retry, up to 100 ms a time, while the other thread holds the lock.
        self._writing = threading.Lock()

    @contextlib.contextmanager
    def _transaction(self, which: Which = "fresh") -> Iterator[sqlite3.Connection]:
        with self._writing, self._files.write(which) as conn:
            yield conn

    def write_users(self, states: Iterable[FreshUser]) -> int:
        return self._write("fresh_users", ((s.user_id, codec.encode_fresh(s)) for s in states))

    def read_users(
        self, user_ids: Iterable[str], decoded: DecodedStates[FreshUser] | None = None
    ) -> dict[str, FreshUser]:
        return fresh_rows(self._read_erasable("fresh_users", user_ids), decoded)

    def write_trending(self, items: Iterable[TrendingItem]) -> int:
        return self._write("trending", ((t.key, codec.encode_fresh(t)) for t in items))

    def read_trending(self, item_ids: Iterable[str] | None = None) -> dict[str, TrendingItem]:
        shards = {k: codec.decode_trending(v) for k, v in self._read("trending", "item_id", item_ids)}
        if not (users := shard_users(shards)):
            return shards
        listed = select_in(self._files.db("fresh"), SELECT_ERASED_USERS, (self._ns, time.time()), users)
        return without_users(shards.items(), {uid for (uid,) in listed})

    def write_shown(self, rows: Iterable[ShownItems]) -> int:
        return self._write("shown_users", ((r.user_id, encode_shown(r)) for r in rows), "shown")

    def read_shown(self, user_ids: Iterable[str]) -> dict[str, ShownItems]:
        return shown_rows(self._read_erasable("shown_users", user_ids, "shown"))

    def write_erasures(self, users: Sequence[FreshUser], shown: Sequence[ShownItems], *, rows: bool = True) -> int:
        """Each tombstone as the row (an absent row only, ``rows=False``) and as its ``erasure``; the users listed
        as erased for twice the TTL: past any shard written with their terms (``OnlineStore.write_erasures``)."""
        sql = WRITE_ERASURE if rows else WRITE_ERASURE_ONLY
        now = time.time()
        tail = () if rows else (now,)  # WRITE_ERASURE_ONLY: whether the row is live, now
        jobs: list[tuple[Which, str, list[tuple[str, bytes]]]] = [
            ("fresh", "fresh_users", [(u.user_id, codec.encode_fresh(u)) for u in users]),
            ("shown", "shown_users", [(r.user_id, encode_shown(r)) for r in shown]),
        ]
        for which, table, encoded in jobs:
            with self._transaction(which) as conn:
                params = ((self._ns, u, d, now + self._ttl_s, d, *tail) for u, d in encoded)
                conn.executemany(sql.format(table=table), params)
        with self._transaction("fresh") as conn:
            conn.executemany(
                WRITE_ERASED_USER, ((self._ns, u.user_id, u.erasure_seen, now + 2 * self._ttl_s) for u in users)
            )
        return len(users)

    def drop_expired(self) -> None:
        """Delete expired fresh users, impressions and trending rows (already invisible) to reclaim their space."""
        for which, tables in (("fresh", ("fresh_users", "trending", "erased_users")), ("shown", ("shown_users",))):
            with self._transaction(which) as conn:
                for table in tables:
                    conn.execute(f"DELETE FROM {table} WHERE ns = ? AND expires_at <= ?", (self._ns, time.time()))  # noqa: S608

    def _write(self, table: str, pairs: Iterable[tuple[str, bytes]], which: Which = "fresh") -> int:
        now = time.time()
        expires = now + self._ttl_s
        with self._transaction(which) as conn:
            before = conn.total_changes
            if table == "trending":
                sql, params = f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?)", ()  # noqa: S608
            else:  # a user's row: its erasure is kept (lambdarec.store.erasure)
                sql, params = UPSERT_ERASABLE.format(table=table), (now,)
            conn.executemany(sql, ((self._ns, key, data, expires, *params) for key, data in pairs))
            return conn.total_changes - before

    def _read_erasable(self, table: str, user_ids: Iterable[str], which: Which = "fresh") -> Iterator[Row]:
        """``(user_id, data, erasure)`` of the live rows of ``user_ids``."""
        sql = f"SELECT user_id, data, erasure FROM {table} WHERE ns = ? AND expires_at > ? AND user_id IN ({{}})"  # noqa: S608
        return select_in(self._files.db(which), sql, (self._ns, time.time()), list(user_ids))

    def _read(
        self, table: str, key: str, keys: Iterable[str] | None, which: Which = "fresh"
    ) -> Iterator[tuple[str, bytes]]:
        conn = self._files.db(which)
        now = time.time()
        if keys is None:
            sql = f"SELECT {key}, data FROM {table} WHERE ns = ? AND expires_at > ?"  # noqa: S608
            yield from conn.execute(sql, (self._ns, now))
            return
        sql = f"SELECT {key}, data FROM {table} WHERE ns = ? AND expires_at > ? AND {key} IN ({{}})"  # noqa: S608
        yield from select_in(conn, sql, (self._ns, now), list(keys))

    # ---- event ids ------------------------------------------------------------------------------------------

    def claim_event_ids(
        self, claims: Mapping[str, LogPosition], ttl_s: float, scope: ClaimScope = "events"
    ) -> dict[str, LogPosition]:
        if not claims:
            return {}
        now = time.time()
        if scope == "impressions" and now < self._legacy_claims_until():
            claims = {**claims, **self._legacy_owners(list(claims), now)}
        with self._transaction(CLAIMS_OF[scope]) as conn:
            conn.executemany(
                CLAIM_EVENT_ID, ((self._ns, eid, p, o, now + ttl_s, now) for eid, (p, o) in claims.items())
            )
            owners = {eid: (p, o) for eid, p, o in select_in(conn, SELECT_EVENT_IDS, (self._ns,), list(claims))}
            if now - self._event_ids_swept[scope] >= EVENT_ID_SWEEP_S:
                conn.execute(DROP_EXPIRED_EVENT_IDS, (self._ns, now))
                self._event_ids_swept[scope] = now
        return owners

    def state_dedup_from(self) -> float:
        """``OnlineStore.state_dedup_from`` in claims.sqlite (``state_dedup``): the newest live claim's expiry,
        exactly, or 0; written once per namespace under the file's write lock."""
        conn = self._files.db("claims")
        try:
            row = conn.execute(SELECT_STATE_DEDUP, (self._ns,)).fetchone()
        except sqlite3.OperationalError:  # no such table: nothing noted yet
            row = None
        if row is not None:
            return float(row[0])
        with self._transaction("claims") as conn:
            conn.execute(STATE_DEDUP_SCHEMA)
            if (row := conn.execute(SELECT_STATE_DEDUP, (self._ns,)).fetchone()) is not None:
                return float(row[0])
            (until,) = conn.execute(NEWEST_LIVE_CLAIM, (self._ns, time.time())).fetchone()
            conn.execute("INSERT INTO state_dedup (ns, since) VALUES (?, ?)", (self._ns, until or 0.0))
        return float(until or 0.0)

    def _legacy_claims_until(self) -> float:
        """Until when an older release's claims in claims.sqlite may be live (``claim_scopes``; 0 in a
        claims.sqlite restored from before this release, which has no such row)."""
        if self._legacy_until is None:
            try:
                row = self._files.db("claims").execute("SELECT legacy_until FROM claim_scopes").fetchone()
            except sqlite3.OperationalError:  # no such table
                row = None
            self._legacy_until = row[0] if row else 0.0
        return self._legacy_until

    def _legacy_owners(self, ids: list[str], now: float) -> dict[str, LogPosition]:
        """The live claims claims.sqlite holds of ``ids`` (an older release claimed impressions there): claimed
        here for their owner, so a resend is a repeat and the owner delivered again is itself (a read;
        claims.sqlite's write lock is not taken)."""
        conn = self._files.db("claims")
        return {eid: (p, o) for eid, p, o in select_in(conn, SELECT_LIVE_EVENT_IDS, (self._ns, now), ids)}

    def release_event_ids(self, claims: Mapping[str, LogPosition], scope: ClaimScope = "events") -> None:
        if not claims:
            return
        files = [CLAIMS_OF[scope]]
        if scope == "impressions" and time.time() < self._legacy_claims_until():
            files.append("claims")  # an older release's claim of the same record, which it deferred to
        for which in files:
            with self._transaction(which) as conn:
                conn.executemany(RELEASE_EVENT_ID, ((self._ns, eid, p, o) for eid, (p, o) in claims.items()))
