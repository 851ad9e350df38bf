"""The store contract on a real Apache Cassandra, plus what only Cassandra has (schema, TTLs, errors)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lambdarec.erasure import tombstone
from lambdarec.model.rows import FreshUser, ShownItems
from lambdarec.settings import StoreSettings
from lambdarec.store import OnlineStore, StoreError, StoreUnavailableError, open_store
from lambdarec.store import cassandra_schema as schema
from lambdarec.store.cassandra import CassandraStore
from tests.cassandra import throwaway_keyspace, user_row_where
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
            where, params = user_row_where(store, version, key)
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
        assert ttl["user_rows_by_bucket"] == ttl["user_row_layout"] == settings.snapshot_ttl_s
        assert ttl["fresh_users"] == ttl["trending"] == ttl["event_claims"] == settings.fresh_ttl_s
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


def test_a_poll_of_event_id_claims_costs_a_few_conditional_requests_not_one_per_id(cassandra_store_url: str) -> None:
    """Issue 17: one lightweight transaction (four Paxos round trips) per event id kept the speed layer on
    Cassandra under 600 events/s; a poll's claims are conditional batches, one or a few per bucket partition."""
    store = CassandraStore(StoreSettings(url=cassandra_store_url, namespace="claims-requests"))
    store.claim_event_ids({"warm": (9, 9)}, ttl_s=60)  # once per process: the upgrade window read (or noted)
    session = store._cql._session
    sent = []
    send = session.execute_async
    try:
        session.execute_async = lambda *a, **kw: sent.append(a[0]) or send(*a, **kw)  # count what is sent
        claims = {f"req-{k}": (0, k) for k in range(1000)}
        assert store.claim_event_ids(claims, ttl_s=60) == claims
        assert len(sent) <= 100, f"{len(sent)} requests for 1,000 claims"
        assert all(stmt.routing_key for stmt in sent), "each batch is routed to its partition's replicas"
        sent.clear()
        store.claim_event_ids({f"req-{k}": (1, k) for k in range(500, 1500)}, ttl_s=60)  # half of them repeats
        assert len(sent) <= 200, f"{len(sent)} requests for 1,000 claims, half of them repeats"
    finally:
        session.execute_async = send
        store.close()


def test_a_poll_mixing_impressions_and_other_events_claims_both_scopes_in_one_round(cassandra_store_url: str) -> None:
    """One consumer applying every event (the default) claims a poll's impressions and its other events: both
    scopes' conditional batches go out together (up to `cassandra.write_concurrency` in flight), not the second
    scope's after the first's."""
    store = CassandraStore(StoreSettings(url=cassandra_store_url, namespace="claims-mixed"))
    store.claim_event_ids({"warm": (9, 9)}, ttl_s=60)  # once per process: the upgrade window read (or noted)
    rounds = []
    run_batches = store._cql.run_batches
    try:
        store._cql.run_batches = lambda batches, what: rounds.append(len(batches)) or run_batches(batches, what)
        events = {f"click-{k}": (0, k) for k in range(100)}
        impressions = {f"imp-{k}": (1, k) for k in range(1000)}
        owners = store.claim_event_ids_scoped({"events": events, "impressions": impressions}, ttl_s=60)
        assert owners == {"events": events, "impressions": impressions}
        assert len(rounds) == 1 and rounds[0] >= 2, rounds
    finally:
        store._cql.run_batches = run_batches
        store.close()


def test_store_init_copies_the_live_claims_of_the_old_event_ids_table(cassandra_endpoint: tuple[str, int]) -> None:
    """Upgrading a deployment whose claims live in the old one-partition-per-id table: ``store init`` copies
    the live ones with their remaining TTL, so a repeat of an event applied before the upgrade is still a repeat,
    and it never overwrites a claim already taken in the new table."""
    with throwaway_keyspace(cassandra_endpoint) as url, CassandraStore(StoreSettings(url=url)) as store:
        store.execute("CREATE TABLE {ks}.event_ids (ns text, event_id text, part int, pos bigint, "
                      "PRIMARY KEY ((ns, event_id)))")  # fmt: skip
        old = "INSERT INTO {ks}.event_ids (ns, event_id, part, pos) VALUES (?, ?, ?, ?) USING TTL ?"
        for k in range(300):
            store.execute(old, ("default", f"old-{k}", 0, k, 600))
        store.execute(old, ("other", "old-1", 4, 44, 600))
        store.execute(old, ("default", "taken", 0, 1, 600))
        assert store.claim_event_ids({"taken": (2, 2)}, ttl_s=60) == {"taken": (2, 2)}
        store.init_schema()
        owners = store.claim_event_ids({f"old-{k}": (1, 1000 + k) for k in range(300)} | {"taken": (3, 3)}, 60)
        assert owners == {f"old-{k}": (0, k) for k in range(300)} | {"taken": (2, 2)}
        with CassandraStore(StoreSettings(url=url, namespace="other")) as other:
            assert other.claim_event_ids({"old-1": (9, 9)}, ttl_s=60) == {"old-1": (4, 44)}
        bucket = schema.event_id_bucket("old-7")
        ttl = store.execute("SELECT TTL(pos) FROM {ks}.event_claims WHERE ns = ? AND bucket = ? AND event_id = ?",
                            ("default", bucket, "old-7")).one()[0]  # fmt: skip
        assert 0 < ttl <= 600, "the copy keeps the claim's remaining time, not a new full window"
        store.init_schema()  # again: the copy is idempotent
        assert store.claim_event_ids({"old-7": (5, 5)}, ttl_s=60) == {"old-7": (0, 7)}


def test_an_impression_an_older_release_claimed_is_still_a_repeat_after_the_upgrade(
    cassandra_endpoint: tuple[str, int],
) -> None:
    """Issue 16: impressions are claimed in partitions of their own. An older release claimed them among the other
    events: the first impression this release claims notes a window (whether or not `store init` ran first), in
    which an impression still defers to those claims: a resend is a repeat, the owner delivered again is itself,
    and releasing it (dead-lettered) frees both. A namespace `store init` found empty gets no window."""
    with throwaway_keyspace(cassandra_endpoint) as url, CassandraStore(StoreSettings(url=url)) as store:
        older = "INSERT INTO {ks}.event_claims (ns, bucket, event_id, part, pos) VALUES (?, ?, ?, ?, ?) USING TTL 600"
        store.execute("DELETE FROM {ks}.locks WHERE ns = ? AND name = ?", ("default", "impression-claims-shared"))
        for eid, pos in (("imp-1", 7), ("imp-3", 8)):  # as the older release left it: its claims, no window noted
            store.execute(older, ("default", schema.event_id_bucket(eid), eid, 0, pos))
        with CassandraStore(StoreSettings(url=url)) as upgraded:  # its consumers start before `store init`
            owners = upgraded.claim_event_ids({"imp-1": (1, 3), "imp-2": (1, 4)}, 600, "impressions")
            assert owners == {"imp-1": (0, 7), "imp-2": (1, 4)}
            assert upgraded.claim_event_ids({"imp-1": (0, 7)}, 600, "impressions") == {"imp-1": (0, 7)}
            assert upgraded.claim_event_ids({"imp-3": (0, 8)}, 600, "impressions") == {"imp-3": (0, 8)}
            upgraded.release_event_ids({"imp-3": (0, 8)}, "impressions")  # dead-lettered: a corrected resend wins
            assert upgraded.claim_event_ids({"imp-3": (1, 9)}, 600, "impressions") == {"imp-3": (1, 9)}
        store.init_schema()  # afterwards: the window stays as noted
        with CassandraStore(StoreSettings(url=url)) as later:
            assert later.claim_event_ids({"imp-1": (2, 2)}, 600, "impressions") == {"imp-1": (0, 7)}
        store.execute(older, ("default", schema.event_id_bucket("imp-4"), "imp-4", 0, 9))
        with CassandraStore(StoreSettings(url=url)) as restarted:  # a release as its first call frees both claims
            restarted.release_event_ids({"imp-4": (0, 9)}, "impressions")
            assert restarted.claim_event_ids({"imp-4": (1, 1)}, 600, "impressions") == {"imp-4": (1, 1)}
        mixed = "mixed"  # a namespace whose first claim of this release is a mixed poll (one consumer, the default)
        for eid, pos in (("imp-5", 3), ("click-5", 4)):
            store.execute(older, (mixed, schema.event_id_bucket(eid), eid, 0, pos))
        with CassandraStore(StoreSettings(url=url, namespace=mixed)) as one:
            poll = {"events": {"click-5": (1, 1), "click-6": (1, 2)}, "impressions": {"imp-5": (1, 3), "imp-6": (1, 4)}}
            owners = one.claim_event_ids_scoped(poll, 600)
            assert owners == {
                "events": {"click-5": (0, 4), "click-6": (1, 2)},  # the older release's click: a repeat
                "impressions": {"imp-5": (0, 3), "imp-6": (1, 4)},  # its impression too: the window was noted first
            }
            mark = store.execute(
                "SELECT owner FROM {ks}.locks WHERE ns = ? AND name = ?", (mixed, "impression-claims-shared")
            )
            assert float(mark.one()[0]) > time.time() + 500
        with CassandraStore(StoreSettings(url=url, namespace="fresh")) as fresh:
            fresh.init_schema()  # nothing claimed yet: the scopes are apart from the start
            assert fresh.claim_event_ids({"x": (0, 1)}, ttl_s=60) == {"x": (0, 1)}
            assert fresh.claim_event_ids({"x": (1, 1)}, 60, "impressions") == {"x": (1, 1)}


def test_a_poll_of_fresh_states_goes_in_batches_as_large_as_the_node_allows_and_no_larger(
    cassandra_store_url: str,
) -> None:
    """Issue 17: each batch is a request, and requests are what a small node spends its CPU on. A poll's user
    states go in batches sized to the warning thresholds the node reports (so it never logs one), a poll's
    trending shards in batches of one bucket partition; every state reads back whole."""
    from lambdarec.model.rows import FreshUser, TrendingItem
    from lambdarec.store import codec
    from lambdarec.store.cassandra_limits import NAMES as THRESHOLDS
    from lambdarec.store.cassandra_limits import SELECT_SETTINGS, limits_from

    store = CassandraStore(StoreSettings(url=cassandra_store_url, namespace="batch-sizes"))
    node = dict(store.execute(SELECT_SETTINGS, (list(THRESHOLDS),)))
    limits = limits_from(node)
    assert store._cql.batch_limits == limits
    sent: list[tuple[str, list]] = []
    run_batches = store._cql.run_batches
    try:
        store._cql.run_batches = lambda batches, what, **kw: (
            sent.append((what, batches)) or run_batches(batches, what, **kw)
        )
        states = [FreshUser(user_id=f"u{k}", events=[(f"i{j}", 1.0e9 + j, 1.0) for j in range(k % 7)],
                            positions={"0": k + 1}) for k in range(600)]  # fmt: skip
        shards = [TrendingItem(item_id=f"i{k}", partition=0, count=1.0 + k, as_of=1.0e9) for k in range(2000)]
        assert store.write_fresh_users(states) == 600
        assert store.write_trending(shards) == 2000
    finally:
        store._cql.run_batches = run_batches
    users = [b for what, batches in sent if "fresh_users" in what for b in batches]
    assert sum(len(b) for b in users) == 600
    assert len(users) <= -(-600 // limits.partitions) + 2, f"{len(users)} requests for 600 states"
    for batch in users:  # the driver's (prepared, statement id, bound values) per statement: (ns, uid, data, ttl)
        assert len(batch) <= limits.partitions
        assert sum(len(v[1]) + len(v[2]) for _, _, v in batch._statements_and_parameters) <= limits.bytes
    trending = [b for what, batches in sent if "trending" in what for b in batches]
    assert len(trending) <= schema.TRENDING_BUCKETS, "a bucket's shards of a poll fit one batch"
    assert store.read_fresh_users([s.user_id for s in states]) == {s.user_id: s for s in states}
    assert codec.encode_fresh(store.read_trending(["i7@0"])["i7@0"]) == codec.encode_fresh(shards[7])
    store.close()


def test_store_init_adds_what_erasures_need_to_a_keyspace_from_before_them(cassandra_endpoint: tuple[str, int]) -> None:
    with throwaway_keyspace(cassandra_endpoint) as url, open_store(StoreSettings(url=url)) as store:
        for table in ("fresh_users", "shown_users"):  # the keyspace as an older release created it
            cql(store).execute(f"ALTER TABLE {{ks}}.{table} DROP erasure")
        cql(store).execute("DROP TABLE {ks}.erased_users")
    with open_store(StoreSettings(url=url)) as store:
        with pytest.raises(StoreError, match="lambdarec store init"):
            store.read_fresh_users(["u1"])
        with pytest.raises(StoreError, match="lambdarec store init"):
            store.read_trending(None)
        store.init_schema()
    with open_store(StoreSettings(url=url)) as store:
        store.write_fresh_users([FreshUser(user_id="u1", recent=[("i1", 1.0)])])
        store.write_erasures([tombstone("u1", 100.0, {0: 5})], [ShownItems(user_id="u1", erasure_seen=100.0)])
        store.write_fresh_users([FreshUser(user_id="u1", recent=[("i1", 1.0)])])  # read before the erasure
        assert store.read_fresh_users(["u1"])["u1"].recent == []
        assert store.read_shown(["u1"]) == {"u1": ShownItems(user_id="u1", erasure_seen=100.0)}
