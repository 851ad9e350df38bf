"""A snapshot's user rows in bucket partitions on a real Cassandra: sized from the announced user count, written
in one-partition batches, read by every path; a version begun before buckets still reads and writes its rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from lambdarec.model.rows import UserRow
from lambdarec.settings import StoreSettings
from lambdarec.store import cassandra_schema as schema
from lambdarec.store import cassandra_users, codec, open_store
from lambdarec.store.cassandra import CassandraStore
from lambdarec.store.errors import ValidationFailedError
from tests.cassandra import throwaway_keyspace
from tests.integration.store.contract import counts
from tests.integration.store.writer import marked_rows

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


def opened(url: str, namespace: str, per_partition: int = 2048) -> CassandraStore:
    settings = StoreSettings(url=url, namespace=namespace)
    settings.cassandra.user_rows_per_partition = per_partition
    store = open_store(settings)
    assert isinstance(store, CassandraStore)
    return store


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(cassandra_store_url: str, namespace: str) -> Iterator[CassandraStore]:
    with opened(cassandra_store_url, namespace, per_partition=40) as s:
        yield s


def wide_rows(n: int) -> list[UserRow]:
    """Rows of 200 candidates (about 1.7 KB encoded), so a partition's rows fill several batches."""
    rng = np.random.default_rng(7)
    return [
        UserRow(f"w{i}", rng.permutation(5000)[:200].astype(np.int32), rng.random(200, dtype=np.float32),
                np.array([i % 50], dtype=np.int32), np.array([1.0], dtype=np.float32))
        for i in range(n)
    ]  # fmt: skip


def test_the_users_spread_over_partitions_sized_from_the_announced_count_and_every_read_finds_them(
    store: CassandraStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cassandra_users, "PENDING_BYTES", 20_000)  # a long write sends its rows in several rounds
    rows = wide_rows(300)
    version = store.begin_snapshot(counts(300))
    assert store.write_users(version, rows[:150], part="a") + store.write_users(version, rows[150:], part="b") == 300
    store.publish(version, counts(300))
    stored = store.execute("SELECT bucket, user_id FROM {ks}.user_rows_by_bucket WHERE version = ? ALLOW FILTERING",
                           (version,)).all()  # fmt: skip
    assert len(stored) == 300 and {b for b, _ in stored} == set(range(8)), "ceil(300 / 40) partitions"
    assert all(b == cassandra_users.user_bucket(uid, 8) for b, uid in stored)
    assert store.execute("SELECT user_id FROM {ks}.user_rows WHERE version = ? ALLOW FILTERING", (version,)).all() == []
    ids = [r.user_id for r in rows] + ["nobody"]
    for got in (store.read_users(version, ids), store.read_users_future(version, ids).result(timeout=10)):
        assert sorted(got) == sorted(r.user_id for r in rows)
        assert all(np.array_equal(got[r.user_id].candidates, r.candidates) for r in rows)
    assert np.array_equal(store.read_user(version, "w123").scores, rows[123].scores)
    assert store.read_user(version, "nobody") is None
    assert store.validate(version, 300, 0) == []


def test_another_process_finds_the_version_s_partitions_whatever_its_own_setting(
    store: CassandraStore, cassandra_store_url: str, namespace: str
) -> None:
    version = store.begin_snapshot(counts(100))
    with opened(cassandra_store_url, namespace, per_partition=7) as other:  # e.g. a Ray actor, a serving process
        assert other.write_users(version, marked_rows(0, 100, 2.0), part="all") == 100
        store.publish(version, counts(100))
        assert len(other.read_users(version, [f"u{i}" for i in range(100)])) == 100
    assert len(store.read_users(version, [f"u{i}" for i in range(100)])) == 100
    buckets = {b for (b,) in store.execute("SELECT bucket FROM {ks}.user_rows_by_bucket WHERE version = ? "
                                           "ALLOW FILTERING", (version,))}  # fmt: skip
    assert buckets == set(range(3)), "ceil(100 / 40), as the version was begun"


def test_a_version_begun_before_buckets_keeps_its_rows_in_user_rows(
    store: CassandraStore, cassandra_store_url: str, namespace: str
) -> None:
    version = store.begin_snapshot(counts(20))
    store.execute("DELETE FROM {ks}.user_row_layout WHERE version = ?", (version,))  # as an older release began it
    with opened(cassandra_store_url, namespace) as upgraded:
        assert upgraded.write_users(version, marked_rows(0, 20, 3.0), part="all") == 20
        upgraded.publish(version, counts(20))
        legacy = upgraded.execute("SELECT user_id FROM {ks}.user_rows WHERE version = ? ALLOW FILTERING", (version,))
        assert len(legacy.all()) == 20
        assert len(upgraded.read_users(version, [f"u{i}" for i in range(25)])) == 20
        assert sorted(upgraded.read_users_future(version, ["u3", "u30"]).result(timeout=10)) == ["u3"]
        assert float(upgraded.read_user(version, "u7").scores[0]) == 3.0


def test_a_reader_learns_where_a_version_s_rows_live_when_it_loads_the_version_not_per_request(
    cassandra_endpoint: tuple[str, int],
) -> None:
    # its own keyspace: the table it drops must not vanish under the other tests sharing the session's keyspace
    with throwaway_keyspace(cassandra_endpoint, "lambdarec_ub") as url, open_store(StoreSettings(url=url)) as writer:
        version = writer.begin_snapshot(counts(10))
        writer.write_users(version, marked_rows(0, 10, 1.0), part="all")
        writer.publish(version, counts(10))
        with open_store(StoreSettings(url=url)) as reader:  # serving's process
            assert isinstance(reader, CassandraStore)
            reader.get_snapshot(version)  # as loading the model does, off the event loop
            # a schema change, with the DDL timeout (a loaded node takes longer than a request's 5 s to drop a table)
            writer._cql.ddl("DROP user_row_layout", lambda session: session.execute(
                f"DROP TABLE {writer._ks}.user_row_layout", timeout=schema.DDL_TIMEOUT_S))  # fmt: skip
            rows = reader.read_users_future(version, ["u1", "u9"]).result(timeout=10)
            assert sorted(rows) == ["u1", "u9"], "no lookup left for a request to wait on"


def test_rows_an_older_release_wrote_one_partition_per_user_into_a_bucketed_version_fail_validation(
    store: CassandraStore,
) -> None:
    version = store.begin_snapshot(counts(8))
    store.write_users(version, marked_rows(0, 5, 1.0), part="new")
    for row in marked_rows(5, 8, 1.0):  # what a Ray worker of the previous release does with its block
        store.execute(schema.INSERT_USER, (version, row.user_id, codec.encode_user(row), 3600))
    store.execute(schema.INSERT_PART, (version, "users", "old", 3, 3600))
    problems = store.validate(version, 8, 0)
    assert any("3 user rows written one partition per user" in p for p in problems), problems
    with pytest.raises(ValidationFailedError, match="one partition per user"):
        store.publish(version, counts(8))
    assert store.current_version(max_age_s=0) != version


def test_a_reader_that_never_loaded_the_version_still_gets_its_rows_without_blocking_the_caller(
    store: CassandraStore, cassandra_store_url: str, namespace: str
) -> None:
    version = store.begin_snapshot(counts(6))
    store.write_users(version, marked_rows(0, 6, 1.0), part="all")
    store.publish(version, counts(6))
    with opened(cassandra_store_url, namespace) as restarted:  # e.g. serving's store reopened, its model kept
        rows = restarted.read_users_future(version, ["u0", "u5", "nobody"]).result(timeout=10)
        assert sorted(rows) == ["u0", "u5"]
        assert sorted(restarted.read_users_future(version, ["u2"]).result(timeout=10)) == ["u2"]
