"""``publish``: a snapshot's per-user rows written through the store vs the backend's own bulk API.

Ours: ``OnlineStore.write_users`` in parts of ``PART`` rows (as the batch layer calls it), state checks and part
tallies included. Reference, on the same rows and settings: a bare loop of the backend's bulk API writing the
same encoded rows into the same table layout: one ``executemany`` in one transaction (SQLite), or (Cassandra) the
same rows grouped by bucket partition into one-partition unlogged batches of the same size, sent with
``execute_concurrent`` at the same concurrency. Both encode the rows inside the timed section. The two are
interleaved, best of ``--repeats``. Cassandra also runs the layout before buckets (one row per partition and per
request, ``execute_concurrent_with_args``), so one run shows what the bucket partitions changed.

Cassandra runs where ``LAMBDAREC_TEST_CASSANDRA=host:port`` names one (e.g. from ``deploy/local/services up``),
in a throwaway keyspace that is dropped afterwards. Goals: >= 0.8x the bulk API, and on Cassandra >= 5,000 user
rows/s from one process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.common import Goal, Result, Scale
from lambdarec.logs import configure_logging
from lambdarec.settings import StoreSettings
from lambdarec.store import UserRow, codec

# users, candidates per user, history items per user
SCALES: dict[str, tuple[int, int, int]] = {
    "small": (20_000, 200, 50),
    "medium": (200_000, 200, 50),
    "large": (1_000_000, 200, 50),
}
GOAL_VS_BULK, GOAL_CASSANDRA_ROWS = 0.8, 5_000.0
PART = 4096  # rows per write_users call: the batch layer's default user block
CASSANDRA_SETTLE_S = 2.0  # pause between timed Cassandra runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = "both" if os.environ.get("LAMBDAREC_TEST_CASSANDRA") else "sqlite"
    parser.add_argument(
        "--backend",
        choices=["sqlite", "cassandra", "both"],
        default=default,
        help=f"which store (default here: {default}; Cassandra needs $LAMBDAREC_TEST_CASSANDRA)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="best of N (default 5 SQLite, 2 Cassandra)")


def make_rows(users: int, k: int, history: int, seed: int = 0) -> list[UserRow]:
    rng = np.random.default_rng(seed)
    cands = rng.integers(0, 50_000, size=(users, k), dtype=np.int32)
    scores = -np.sort(-rng.random((users, k), dtype=np.float32), axis=1)
    hist = rng.integers(0, 50_000, size=(users, history), dtype=np.int32)
    weights = rng.random((users, history), dtype=np.float32)
    return [UserRow(f"user-{i}", cands[i], scores[i], hist[i], weights[i]) for i in range(users)]


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _ours(store, rows: list[UserRow]) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    def write() -> None:
        version = store.begin_snapshot({"bench": "publish", "counts": {"user_rows": len(rows)}})  # as the nightly
        for i in range(0, len(rows), PART):
            store.write_users(version, rows[i : i + PART], part=f"p{i // PART}")

    return write


def _encoded(version: str, rows: list[UserRow]) -> Iterator[tuple[str, str, bytes]]:
    return ((version, r.user_id, codec.encode_user(r)) for r in rows)


def _compare(backend: str, ours: Callable[[], None], reference: Callable[[], None], n: int, repeats: int,
             scale: Scale, settle: Callable[[], None] = lambda: None, what: str = "user rows written",
             against: str = "", goal: Goal | None = None) -> Result:  # fmt: skip
    """Best of ``repeats`` each, in A-B-B-A order: a server that slows as it fills (Cassandra flushing and
    compacting on a small machine) then penalises both paths alike. ``settle`` runs untimed before each write."""
    best = {"ours": float("inf"), "reference": float("inf")}
    for i in range(repeats):
        order = [("reference", reference), ("ours", ours)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            settle()
            best[name] = min(best[name], _time(fn))
    return Result("publish", f"{backend} {what}", n / best["ours"], n / best["reference"], "rows/s",
                  scale, note=f"best of {repeats}, A-B-B-A order; {n} rows, parts of {PART}{against}",
                  goal=goal)  # fmt: skip


def run_sqlite(rows: list[UserRow], repeats: int, scale: Scale) -> Iterator[Result]:
    from lambdarec.store.sqlite import SQLiteStore
    from lambdarec.store.sqlite_schema import PRAGMAS, SNAPSHOT_SCHEMA

    with tempfile.TemporaryDirectory(prefix="lambdarec-bench-") as tmp:
        store = SQLiteStore(StoreSettings(url=f"sqlite:///{Path(tmp).resolve()}/ours"))
        bare = sqlite3.connect(Path(tmp) / "reference.sqlite", isolation_level=None)
        bare.executescript(PRAGMAS + SNAPSHOT_SCHEMA)  # the same file settings and table as the store's

        def reference() -> None:
            bare.execute("BEGIN")
            bare.executemany("INSERT INTO users VALUES (?, ?, ?)", _encoded(secrets.token_hex(8), rows))
            bare.execute("COMMIT")

        def settle() -> None:  # both WALs empty: no run pays for a checkpoint the previous run left behind
            for path in (Path(tmp) / "ours" / "snapshots.sqlite", Path(tmp) / "reference.sqlite"):
                with contextlib.closing(sqlite3.connect(path)) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        yield _compare("sqlite", _ours(store, rows), reference, len(rows), repeats, scale, settle,
                       goal=Goal(ratio=GOAL_VS_BULK))  # fmt: skip
        bare.close()
        store.close()


def run_cassandra(rows: list[UserRow], repeats: int, scale: Scale) -> Iterator[Result]:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import BatchStatement, BatchType

    from lambdarec.store import cassandra_schema as schema
    from lambdarec.store import cassandra_users as users
    from lambdarec.store.cassandra import CassandraStore
    from lambdarec.store.cassandra_fresh import IN_FLIGHT_BYTES

    host, _, port = os.environ["LAMBDAREC_TEST_CASSANDRA"].rpartition(":")
    keyspace = f"lambdarec_bench_{secrets.token_hex(4)}"
    settings = StoreSettings(url=f"cassandra://{host}:{port}/{keyspace}")
    store = CassandraStore(settings)
    same_as_ours = ExecutionProfile(  # routing and consistency as the store's write profile
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=schema.consistency(settings.cassandra.write_consistency, "write_consistency"),
        request_timeout=settings.request_timeout_s,
    )
    cluster = Cluster([host], port=int(port), protocol_version=settings.cassandra.protocol_version,
                      execution_profiles={EXEC_PROFILE_DEFAULT: same_as_ours})  # fmt: skip
    try:
        store.init_schema()
        session = cluster.connect()
        insert = session.prepare(schema.INSERT_USER.format(ks=keyspace))
        insert.is_idempotent = True
        insert_bucket = session.prepare(users.INSERT_ROW.format(ks=keyspace))
        ttl, concurrency = settings.snapshot_ttl_s, settings.cassandra.write_concurrency
        buckets = users.bucket_count({"counts": {"user_rows": len(rows)}}, settings.cassandra.user_rows_per_partition)

        def reference() -> None:  # the same partitions and batch sizes, straight through the driver
            version, batches, open_batch = secrets.token_hex(8), [], {}
            for _, uid, data in _encoded(version, rows):
                bucket = users.user_bucket(uid, buckets)
                batch, size = open_batch.get(bucket, (None, 0))
                if batch is None or size + len(data) > users.BATCH_BYTES:
                    batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                    batches.append((batch, None))
                batch.add(insert_bucket, (version, bucket, uid, data, ttl))
                open_batch[bucket] = (batch, size + len(data) + len(uid))
            in_flight = min(concurrency, IN_FLIGHT_BYTES // users.BATCH_BYTES)
            execute_concurrent(session, batches, concurrency=in_flight, raise_on_first_error=True)

        def row_per_request() -> None:  # the layout before buckets: one partition and one request per user
            params = ((*key, ttl) for key in _encoded(secrets.token_hex(8), rows))
            execute_concurrent_with_args(session, insert, params, concurrency=concurrency, raise_on_first_error=True)

        def settle() -> None:  # let the server flush what the previous run left in its memtables
            time.sleep(CASSANDRA_SETTLE_S)

        yield _compare("cassandra", _ours(store, rows), reference, len(rows), repeats, scale, settle,
                       against=f"; reference: the driver's one-partition batches, {buckets} partitions",
                       goal=Goal(ratio=GOAL_VS_BULK, at_least=GOAL_CASSANDRA_ROWS))  # fmt: skip
        yield _compare("cassandra", _ours(store, rows), row_per_request, len(rows), repeats, scale, settle,
                       what="user rows vs one row per request",
                       against="; reference: the layout before buckets")  # fmt: skip
    finally:
        store.drop_schema()
        store.close()
        cluster.shutdown()


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    configure_logging("WARNING")  # stdout carries the results
    users, k, history = SCALES[scale]
    backend = getattr(args, "backend", "sqlite")
    rows = make_rows(users, k, history)
    if backend in ("sqlite", "both"):
        yield from run_sqlite(rows, args.repeats or 5, scale)
    if backend in ("cassandra", "both"):
        if not os.environ.get("LAMBDAREC_TEST_CASSANDRA"):
            print("publish: no $LAMBDAREC_TEST_CASSANDRA, Cassandra skipped", file=sys.stderr)
            return
        yield from run_cassandra(rows, args.repeats or 2, scale)
