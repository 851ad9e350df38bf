"""The store contract on a real Apache Cassandra, plus what only Cassandra has (schema, TTLs, errors)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lambdarec.settings import StoreSettings
from lambdarec.store import OnlineStore, StoreError, StoreUnavailableError, open_store
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra import CassandraStore
from tests.cassandra import throwaway_keyspace
from tests.integration.store.contract import StoreContract

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


class TestCassandraStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _keyspace(self, cassandra_store_url: str) -> None:
        self.url = cassandra_store_url

    def store_url(self) -> str:
        return self.url

    def corrupt_array_chunk(self, store: OnlineStore, version: str, name: str) -> None:
        cql(store).execute(
            "INSERT INTO {ks}.array_chunks (version, name, chunk, data) VALUES (?, ?, 0, ?)",
            (version, name, b"\x93NUMPY garbage"),
        )

    def tamper_row(self, store: OnlineStore, version: str, key: str | int, edit: Callable[[bytes], bytes]) -> None:
        if isinstance(key, str):
            where, params = "{ks}.user_rows WHERE version = ? AND user_id = ?", (version, key)
        else:
            where, params = "{ks}.item_rows WHERE version = ? AND bucket = ? AND item = ?", (
                version, schema.item_bucket(key), key)  # fmt: skip
        data = cql(store).execute(f"SELECT data FROM {where}", params).one()[0]
        cql(store).execute(f"UPDATE {where.replace(' WHERE', ' SET data = ? WHERE')}", (edit(data), *params))

    def fresh_ttl_left(self, store: OnlineStore, table: str, key: str) -> float | None:
        if table in ("fresh_users", "shown_users"):
            query, params = f"SELECT TTL(data) FROM {{ks}}.{table} WHERE ns = ? AND user_id = ?", (self.namespace, key)
        else:
            query = "SELECT TTL(data) FROM {ks}.trending WHERE ns = ? AND bucket = ? AND item_id = ?"
            params = (self.namespace, schema.trending_bucket(key), key)
        row = cql(store).execute(query, params).one()
        return float(row[0]) if row and row[0] is not None else None


def cql(store: OnlineStore) -> CassandraStore:
    """The store, as the Cassandra backend whose ``execute`` the fault hooks use."""
    assert isinstance(store, CassandraStore), store
    return store


def test_drop_schema_drops_the_keyspace_and_says_how_to_create_it_again(cassandra_endpoint: tuple[str, int]) -> None:
    with throwaway_keyspace(cassandra_endpoint) as url, open_store(StoreSettings(url=url)) as store:
        store.begin_snapshot({})
        store.drop_schema()
        keyspaces = store.execute("SELECT keyspace_name FROM system_schema.keyspaces")  # type: ignore[attr-defined]
        assert schema.parse_url(url).keyspace not in {row[0] for row in keyspaces}
        with pytest.raises(StoreError, match="lambdarec store init"):
            store.list_snapshots()
        store.drop_schema()  # again: nothing left to drop, no error


def test_init_schema_sets_table_ttls_and_is_repeatable(cassandra_store_url: str) -> None:
    store = CassandraStore(StoreSettings(url=cassandra_store_url))
    try:
        store.init_schema()  # the second time: nothing to create, nothing changes
        ks = schema.parse_url(cassandra_store_url).keyspace
        query = "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = ?"
        rows = store.execute(query, (ks,))
        ttl = dict(rows.all())
        settings = StoreSettings()
        assert ttl["user_rows"] == ttl["item_rows"] == ttl["array_chunks"] == settings.snapshot_ttl_s
        assert ttl["fresh_users"] == ttl["trending"] == ttl["event_ids"] == settings.fresh_ttl_s
        assert ttl["pointer"] == ttl["snapshots"] == ttl["locks"] == 0
    finally:
        store.close()


def test_a_missing_keyspace_names_the_fix(cassandra_endpoint: tuple[str, int]) -> None:
    host, port = cassandra_endpoint
    store = CassandraStore(StoreSettings(url=f"cassandra://{host}:{port}/lambdarec_absent"))
    try:
        with pytest.raises(StoreError, match="lambdarec store init"):
            store.list_snapshots()
    finally:
        store.close()


def test_an_unreachable_cluster_names_the_hosts_tried() -> None:
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1"):
        CassandraStore(StoreSettings(url="cassandra://127.0.0.1:1/recs", cassandra={"connect_timeout_s": 2}))


def test_statements_are_prepared_idempotent_and_consistency_comes_from_settings(cassandra_store_url: str) -> None:
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    from lambdarec.store.cassandra_session import WRITE

    settings = StoreSettings(
        url=cassandra_store_url, cassandra={"write_consistency": "ONE", "read_consistency": "LOCAL_ONE"}
    )
    store = CassandraStore(settings)
    try:
        assert store._stmt(schema.INSERT_USER).is_idempotent
        assert store._stmt(schema.SELECT_USER).is_idempotent
        assert not store._stmt(schema.TAKE_LOCK).is_idempotent, "a retried LWT could take a lock twice"
        profiles = store._cql.cluster.profile_manager.profiles
        assert profiles[WRITE].consistency_level == ConsistencyLevel.ONE
        assert profiles[EXEC_PROFILE_DEFAULT].consistency_level == ConsistencyLevel.LOCAL_ONE
    finally:
        store.close()


def test_fresh_reads_group_users_by_the_routing_key_the_driver_uses(cassandra_store_url: str) -> None:
    """The fresh-state reads group users by replica from a routing key computed without binding a statement:
    it must be byte for byte the key the driver routes by, or groups would not match replicas."""
    from lambdarec.store.cassandra_fresh import partition_key
    from lambdarec.store.cassandra_session import CassandraSession

    session = CassandraSession(StoreSettings(url=cassandra_store_url))
    try:
        for ns, uid in (("default", "u1"), ("ns-é", "user with spaces"), ("", "x" * 300)):
            bound = session.stmt(schema.SELECT_FRESH_USER).bind((ns, uid))
            assert partition_key(ns, uid) == bound.routing_key
    finally:
        session.shutdown()
