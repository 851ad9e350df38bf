"""The Cassandra store's event-id claims: a poll's claims as a few conditional batches, one per bucket partition.

The speed layer claims every event id of a poll for the log position that carries it (``claim_event_ids``), so
a repeated id is applied once across restarts and consumers. A claim must be atomic per id (consumers racing on
one id agree on one owner), which on Cassandra means a lightweight transaction: four Paxos round trips on the
replicas. One per id capped the consumer near 500 events/s on a small node. Here ids live in
``EVENT_ID_BUCKETS`` partitions (a stable hash of the id), and the ids of one bucket are claimed together by one
conditional batch (``INSERT ... IF NOT EXISTS`` for each, a single Paxos round on that partition):

* the batch applies only if none of its ids is claimed yet; all its claims then land together;
* otherwise nothing of it lands and Cassandra returns the claims that exist (a repeat's first owner, or this
  record's own claim when it is delivered again): those are the owners, and the rest are claimed again without
  them, until every id has its owner. Each round removes at least one id, so it ends.

Sizing: a bucket partition holds ``rate x events.dedup_window_s / EVENT_ID_BUCKETS`` live claims (about 2.7M
small rows at 2,000 events/s and the default day); each claim expires by its TTL.

The table used to be ``event_ids`` (one partition per id). ``store init`` copies its live claims into
``event_claims`` with their remaining TTL (:func:`copy_legacy`) and leaves it to expire.

Impressions are claimed in partitions of their own (namespace key ``<ns>/impressions``; a namespace never holds a
``/``), so the impressions consumer's conditional batches never contend with the positive-event consumer's on one
partition (:class:`ScopedClaims`). An older release claimed impressions among the others, so the first claim
this release makes in a namespace (of either scope) writes, for good, the ``LEGACY_MARK`` row of ``locks``: until
when claims of the older release may still be live (one claim window on, or 0 where the namespace held no claim;
``store init`` on a namespace with no claim yet writes 0). Until then an impression also defers to a live claim of
its id among the others, so one resent across the upgrade is applied once.

Example
-------
>>> claim(cql, "default", [("e1", 0, 5, 86400)])   # doctest: +SKIP
{'e1': (0, 5)}
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

from cassandra.query import BatchStatement, BatchType

from lambdarec.logs import get_logger
from lambdarec.model.rows import LogPosition
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra_session import WRITE, CassandraSession
from lambdarec.store.coordination import ClaimScope
from lambdarec.store.errors import StoreError

log = get_logger(__name__)

# claims per conditional batch: about 2 KiB with ids of 20-30 characters, under Cassandra's 5 KiB batch warning;
# 12 KiB at the longest ids (256 characters), a warning in the node's log, far under its 50 KiB refusal
BATCH_ROWS = 40
LEGACY_TABLE = "event_ids"
SELECT_LEGACY = "SELECT ns, event_id, part, pos, TTL(pos) FROM {ks}.event_ids"
HAS_TABLE = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?"
COPY_CHUNK = 5000  # legacy claims copied per round
LEGACY_MARK = "impression-claims-shared"  # a `locks` row for good: until when impressions defer to the others' claims
STATE_DEDUP_MARK = "state-dedup-from"  # a `locks` row for good: from when repeats may be looked up in states alone
SELECT_CLAIMS = "SELECT event_id, part, pos FROM {ks}.event_claims WHERE ns = ? AND bucket = ? AND event_id IN ?"
ANY_CLAIM = "SELECT event_id FROM {ks}.event_claims WHERE ns = ? AND bucket = ? LIMIT 1"

Claim = tuple[str, int, int, int]  # event id, log partition, offset, TTL in seconds


def claim(cql: CassandraSession, ns: str, claims: Iterable[Claim]) -> dict[str, LogPosition]:
    """Claim each id for its position unless a live claim holds it; the owner of every id."""
    return claim_many(cql, {ns: claims})[ns]


def claim_many(cql: CassandraSession, claims: Mapping[str, Iterable[Claim]]) -> dict[str, dict[str, LogPosition]]:
    """:func:`claim` for several namespace keys (the scopes of a poll), every partition's batch sent together (up to
    the session's write concurrency in flight); each key's owners."""
    pending: list[tuple[str, list[Claim]]] = []
    for ns, some in claims.items():
        groups: dict[int, list[Claim]] = defaultdict(list)
        for c in some:
            groups[schema.event_id_bucket(c[0])].append(c)
        pending += [
            (ns, group[i : i + BATCH_ROWS]) for group in groups.values() for i in range(0, len(group), BATCH_ROWS)
        ]
    owners: dict[str, dict[str, LogPosition]] = {ns: {} for ns in claims}
    stmt = cql.stmt(schema.CLAIM_EVENT_ID)
    while pending:
        batches = []
        for ns, group in pending:
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)  # one partition: one Paxos round, no batch log
            for eid, part, pos, ttl in group:
                batch.add(stmt, (ns, schema.event_id_bucket(eid), eid, part, pos, ttl))
            batches.append(batch)
        again = []
        for (ns, group), rs in zip(pending, cql.run_batches(batches, "claim event ids"), strict=True):
            rows = rs.current_rows
            if rows and rows[0][0]:
                owners[ns].update((eid, (part, pos)) for eid, part, pos, _ in group)
                continue
            eid_at, part_at, pos_at = (rs.column_names.index(c) for c in ("event_id", "part", "pos"))
            held = {row[eid_at]: (row[part_at], row[pos_at]) for row in rows}  # the claims that exist
            rest = [c for c in group if c[0] not in held]
            owners[ns].update((eid, held[eid]) for eid, *_ in group if eid in held)
            if len(rest) == len(group):
                raise StoreError(f"Cassandra refused a claim of {len(group)} event ids without naming an owner")
            if rest:
                again.append((ns, rest))
        pending = again
    return owners


def release(cql: CassandraSession, ns: str, claims: Mapping[str, LogPosition]) -> None:
    """Drop each id's claim if its owner is still the position given (rare: dead-lettered records only)."""
    params = [(ns, schema.event_id_bucket(eid), eid, p, o) for eid, (p, o) in claims.items()]
    for _ in cql.many(schema.RELEASE_EVENT_ID, params):
        pass


def copy_legacy(cql: CassandraSession, ttl_s: int) -> int:
    """Copy the live claims of the old ``event_ids`` table (if the keyspace has one) into ``event_claims`` with
    their remaining TTL, without overwriting a claim already there; how many were copied. Run by ``store init``,
    while no speed consumer runs."""
    if not cql.execute(HAS_TABLE, (cql.keyspace, LEGACY_TABLE)).one():
        return 0
    by_ns: dict[str, list[Claim]] = defaultdict(list)
    copied = 0
    for read, (ns, eid, part, pos, ttl) in enumerate(cql.execute(SELECT_LEGACY), 1):  # paged by the driver
        by_ns[ns].append((eid, part, pos, ttl or ttl_s))
        if read % COPY_CHUNK == 0:
            copied += _flush(cql, by_ns)
    copied += _flush(cql, by_ns)
    log.info("store.event_ids_copied", claims=copied, source=LEGACY_TABLE, target="event_claims")
    return copied


def _flush(cql: CassandraSession, by_ns: dict[str, list[Claim]]) -> int:
    copied = sum(len(claim(cql, ns, claims)) for ns, claims in by_ns.items())
    by_ns.clear()
    return copied


def scoped_ns(ns: str, scope: ClaimScope) -> str:
    """The namespace key of ``scope``'s claims (a namespace never holds a ``/``)."""
    return ns if scope == "events" else f"{ns}/{scope}"


class ScopedClaims:
    """One namespace's claims by scope (see the module's text); the legacy window read once per process."""

    def __init__(self, cql: CassandraSession, ns: str):
        self._cql, self._ns = cql, ns
        self._legacy_until: float | None = None

    def claim(
        self, claims: Mapping[ClaimScope, Mapping[str, LogPosition]], ttl_s: float
    ) -> dict[ClaimScope, dict[str, LogPosition]]:
        """Each scope's owners; every scope's conditional batches are sent together."""
        ttl = max(1, math.ceil(ttl_s))
        wanted = {scope: [(eid, part, pos, ttl) for eid, (part, pos) in ids.items()] for scope, ids in claims.items()}
        # the first claim of this release in the namespace, of either scope, notes the window before it lands
        in_window = any(wanted.values()) and time.time() < self._legacy(ttl)
        if wanted.get("impressions") and in_window:
            held = self._legacy_owners([c[0] for c in wanted["impressions"]])  # claimed for their owner: a resend
            wanted["impressions"] = [(e, *held.get(e, (part, pos)), t) for e, part, pos, t in wanted["impressions"]]
        owners = claim_many(self._cql, {scoped_ns(self._ns, scope): some for scope, some in wanted.items()})
        return {scope: owners[scoped_ns(self._ns, scope)] for scope in wanted}

    def release(self, scope: ClaimScope, claims: Mapping[str, LogPosition]) -> None:
        release(self._cql, scoped_ns(self._ns, scope), claims)
        if scope == "impressions" and time.time() < (self._legacy_until or self._stored_mark() or 0.0):
            release(self._cql, self._ns, claims)  # an older release's claim of the same record, deferred to

    def mark_at_init(self) -> None:
        """Run by ``store init``: a namespace with no claim at all has no older release's to defer to."""
        if not self._any("events"):
            self._put_mark(0.0)

    def state_dedup_from(self, window_s: float) -> float:
        """``OnlineStore.state_dedup_from``: the ``STATE_DEDUP_MARK`` row of ``locks``, written once: 0 where the
        namespace holds no claim of the events scope, else one window on (a claim's expiry is not read back)."""
        until = self._stored_mark(STATE_DEDUP_MARK)
        if until is None:
            until = self._put_mark(time.time() + window_s if self._any("events") else 0.0, STATE_DEDUP_MARK)
        return until

    def _legacy(self, window_s: float) -> float:
        if self._legacy_until is None:
            until = self._stored_mark()
            if until is None:
                until = self._put_mark(time.time() + window_s if self._any("events") else 0.0)
            self._legacy_until = until
        return self._legacy_until

    def _stored_mark(self, name: str = LEGACY_MARK) -> float | None:
        row = self._cql.run(schema.SELECT_LOCK, (self._ns, name), WRITE).one()
        return None if row is None else _as_time(row[0])

    def _put_mark(self, until: float, name: str = LEGACY_MARK) -> float:
        """Write the mark ``name`` unless one exists; the mark that holds."""
        put = self._cql.run(schema.PUT_MARK, (self._ns, name, repr(until)), WRITE)
        if not put.was_applied:
            return _as_time(dict(zip(put.column_names, put.one(), strict=True))["owner"])
        if until and name == LEGACY_MARK:
            log.info("store.impression_claims_scoped", namespace=self._ns, legacy_claims_until=until)
        return until

    def _any(self, scope: ClaimScope) -> bool:
        params = [(scoped_ns(self._ns, scope), b) for b in range(schema.EVENT_ID_BUCKETS)]
        return any(rs.one() is not None for rs in self._cql.many(ANY_CLAIM, params))

    def _legacy_owners(self, ids: list[str]) -> dict[str, LogPosition]:
        """The live claims of ``ids`` among the other events' (an older release claimed impressions there)."""
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for eid in ids:
            by_bucket[schema.event_id_bucket(eid)].append(eid)
        params = [(self._ns, b, group) for b, group in by_bucket.items()]
        return {row[0]: (row[1], row[2]) for rs in self._cql.many(SELECT_CLAIMS, params) for row in rs}


def _as_time(text: str) -> float:
    """A mark's end time; a mark that is not a number (never written by a release) counts as no window."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0
