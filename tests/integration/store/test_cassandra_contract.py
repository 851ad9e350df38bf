"""The store contract on a real Apache Cassandra, plus what only Cassandra has (schema, TTLs, errors)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lambdarec.settings import StoreSettings
from lambdarec.store import OnlineStore, StoreError, StoreUnavailableError
from lambdarec.store import cassandra_schema as schema
from tests.integration.store.contract import StoreContract

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


class TestCassandraStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _keyspace(self, cassandra_store_url: str) -> None:
        self.url = cassandra_store_url

    def store_url(self) -> str:
        return self.url

    def corrupt_array_chunk(self, store: OnlineStore, version: str, name: str) -> None:
        ks = schema.parse_url(self.url).keyspace
        store._session.execute(  # type: ignore[attr-defined]
            f"INSERT INTO {ks}.array_chunks (version, name, chunk, data) VALUES (%s, %s, 0, %s)",
            (version, name, b"\x93NUMPY garbage"),
        )

    def tamper_row(self, store: OnlineStore, version: str, key: str | int, edit: Callable[[bytes], bytes]) -> None:
        ks, session = schema.parse_url(self.url).keyspace, store._session  # type: ignore[attr-defined]
        if isinstance(key, str):
            where, params = f"{ks}.user_rows WHERE version = %s AND user_id = %s", (version, key)
        else:
            where, params = f"{ks}.item_rows WHERE version = %s AND bucket = %s AND item = %s", (
                version, schema.item_bucket(key), key)  # fmt: skip
        data = session.execute(f"SELECT data FROM {where}", params).one()[0]
        session.execute(f"UPDATE {where.replace(' WHERE', ' SET data = %s WHERE')}", (edit(data), *params))

    def fresh_ttl_left(self, store: OnlineStore, table: str, key: str) -> float | None:
        ks = schema.parse_url(self.url).keyspace
        if table == "fresh_users":
            cql, params = (
                f"SELECT TTL(data) FROM {ks}.fresh_users WHERE ns = %s AND user_id = %s",
                (self.namespace, key),
            )
        else:
            cql = f"SELECT TTL(data) FROM {ks}.trending WHERE ns = %s AND bucket = %s AND item_id = %s"
            params = (self.namespace, schema.trending_bucket(key), key)
        row = store._session.execute(cql, params).one()  # type: ignore[attr-defined]
        return float(row[0]) if row and row[0] is not None else None


def test_init_schema_sets_table_ttls_and_is_repeatable(cassandra_store_url: str) -> None:
    from lambdarec.store.cassandra import CassandraStore

    store = CassandraStore(StoreSettings(url=cassandra_store_url))
    try:
        store.init_schema()  # the second time: nothing to create, nothing changes
        ks = schema.parse_url(cassandra_store_url).keyspace
        rows = store._session.execute(
            "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s", (ks,)
        )
        ttl = dict(rows.all())
        settings = StoreSettings()
        assert ttl["user_rows"] == ttl["item_rows"] == ttl["array_chunks"] == settings.snapshot_ttl_s
        assert ttl["fresh_users"] == ttl["trending"] == ttl["event_ids"] == settings.fresh_ttl_s
        assert ttl["pointer"] == ttl["snapshots"] == ttl["locks"] == 0
    finally:
        store.close()


def test_a_missing_keyspace_names_the_fix(cassandra_endpoint: tuple[str, int]) -> None:
    from lambdarec.store.cassandra import CassandraStore

    host, port = cassandra_endpoint
    store = CassandraStore(StoreSettings(url=f"cassandra://{host}:{port}/lambdarec_absent"))
    try:
        with pytest.raises(StoreError, match="lambdarec store init"):
            store.list_snapshots()
    finally:
        store.close()


def test_an_unreachable_cluster_names_the_hosts_tried() -> None:
    from lambdarec.store.cassandra import CassandraStore

    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1"):
        CassandraStore(StoreSettings(url="cassandra://127.0.0.1:1/recs", cassandra={"connect_timeout_s": 2}))


def test_statements_are_prepared_idempotent_and_consistency_comes_from_settings(cassandra_store_url: str) -> None:
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    from lambdarec.store.cassandra import WRITE, CassandraStore

    settings = StoreSettings(
        url=cassandra_store_url, cassandra={"write_consistency": "ONE", "read_consistency": "LOCAL_ONE"}
    )
    store = CassandraStore(settings)
    try:
        assert store._stmt(schema.INSERT_USER).is_idempotent
        assert store._stmt(schema.SELECT_USER).is_idempotent
        assert not store._stmt(schema.TAKE_LOCK).is_idempotent, "a retried LWT could take a lock twice"
        profiles = store._cluster.profile_manager.profiles
        assert profiles[WRITE].consistency_level == ConsistencyLevel.ONE
        assert profiles[EXEC_PROFILE_DEFAULT].consistency_level == ConsistencyLevel.LOCAL_ONE
    finally:
        store.close()
