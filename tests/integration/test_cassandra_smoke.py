"""Cassandra smoke test with cassandra-driver directly: keyspace, table, prepared insert and select, drop."""

from __future__ import annotations

import uuid

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


def test_prepared_statements_write_and_read_back_in_a_fresh_keyspace(cassandra_endpoint: tuple[str, int]) -> None:
    host, port = cassandra_endpoint
    keyspace = f"smoke_{uuid.uuid4().hex[:12]}"
    profile = ExecutionProfile(
        load_balancing_policy=RoundRobinPolicy(), consistency_level=ConsistencyLevel.ONE, request_timeout=30
    )
    cluster = Cluster([host], port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=30)
    session = cluster.connect()
    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.set_keyspace(keyspace)
        session.execute("CREATE TABLE candidates (user_id text PRIMARY KEY, items list<text>, scores blob)")
        insert = session.prepare("INSERT INTO candidates (user_id, items, scores) VALUES (?, ?, ?)")
        insert.is_idempotent = True
        rows = {f"user-{i}": ([f"item-{i}", f"item-{i + 1}"], bytes([i, 255 - i])) for i in range(50)}
        for user, (items, scores) in rows.items():
            session.execute(insert, (user, items, scores))

        select = session.prepare("SELECT user_id, items, scores FROM candidates WHERE user_id = ?")
        for user, (items, scores) in rows.items():
            row = session.execute(select, (user,)).one()
            assert (row.user_id, list(row.items), bytes(row.scores)) == (user, items, scores)
        assert session.execute(select, ("nobody",)).one() is None
        assert session.execute("SELECT COUNT(*) FROM candidates").one()[0] == len(rows)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
