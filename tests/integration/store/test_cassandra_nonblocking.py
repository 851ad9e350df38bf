"""The Cassandra store's non-blocking reads (what serving awaits on its event loop) give exactly what the
blocking reads give: the same rows, the same corrupt-row errors carrying the good rows, the same store errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import CorruptRowError, StoreError, open_store
from lambdarec.store.cassandra import CassandraStore
from lambdarec.store.nonblocking import NonBlockingReads
from lambdarec.store.sqlite import SQLiteStore
from tests.cassandra import throwaway_keyspace, user_row_where
from tests.integration.store.contract import counts
from tests.integration.store.writer import marked_rows

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


@pytest.fixture
def store(cassandra_store_url: str) -> Iterator[CassandraStore]:
    with open_store(StoreSettings(url=cassandra_store_url, namespace=f"t{uuid.uuid4().hex[:12]}")) as opened:
        assert isinstance(opened, CassandraStore)
        yield opened


def published(store: CassandraStore, n: int) -> str:
    version = store.begin_snapshot({})
    store.write_users(version, marked_rows(0, n, 1.0), part="all")
    store.publish(version, counts(n))
    return version


def test_cassandra_offers_nonblocking_reads_and_sqlite_does_not(store: CassandraStore, tmp_path) -> None:
    assert isinstance(store, NonBlockingReads)
    with SQLiteStore(StoreSettings(url=f"sqlite:///{tmp_path}/s")) as sqlite:
        assert not isinstance(sqlite, NonBlockingReads)  # serving then reads it inline or in its threads


def test_nonblocking_reads_give_what_the_blocking_reads_give(store: CassandraStore) -> None:
    version = published(store, 6)
    store.write_fresh_users([FreshUser(user_id=u, recent=[("i1", 5.0)], updated_at=5.0) for u in ("u1", "u3")])
    ids = ["u0", "u1", "u3", "nobody", "u1"]
    rows = store.read_users_future(version, ids).result(timeout=10)
    assert rows.keys() == store.read_users(version, ids).keys() == {"u0", "u1", "u3"}
    assert np.array_equal(rows["u3"].candidates, store.read_user(version, "u3").candidates)
    fresh = store.read_fresh_users_future(ids).result(timeout=10)
    assert fresh == store.read_fresh_users(ids) and sorted(fresh) == ["u1", "u3"]
    assert store.read_users_future(version, []).result(timeout=10) == {}


def test_a_corrupt_row_read_without_blocking_costs_only_itself(store: CassandraStore) -> None:
    version = published(store, 4)
    where, params = user_row_where(store, version, "u2")
    data = store.execute(f"SELECT data FROM {where}", params).one()[0]
    store.execute(f"UPDATE {where.replace(' WHERE', ' SET data = ? WHERE')}", (data[:-1], *params))
    with pytest.raises(CorruptRowError, match="'u2'") as caught:
        store.read_users_future(version, ["u0", "u2", "u3"]).result(timeout=10)
    assert caught.value.keys == ["u2"] and sorted(caught.value.rows) == ["u0", "u3"]


def test_a_failed_nonblocking_read_is_a_store_error_in_the_future_naming_it(
    cassandra_endpoint: tuple[str, int],
) -> None:
    # its own keyspace: the tables it drops must not vanish under the other tests sharing the session's keyspace
    with throwaway_keyspace(cassandra_endpoint, "lambdarec_nb") as url, open_store(StoreSettings(url=url)) as store:
        assert isinstance(store, CassandraStore)
        store.read_fresh_users_future(["u1"]).result(timeout=10)  # prepared: the next failure comes from the server
        version = store.begin_snapshot({})
        store.execute("DROP TABLE {ks}.user_rows_by_bucket")
        with pytest.raises(StoreError, match=r"user_rows_by_bucket.*lambdarec store init"):
            store.read_users_future(version, ["u1"]).result(timeout=10)  # never prepared: fails while sending
        store.execute("DROP TABLE {ks}.user_rows")
        with pytest.raises(StoreError, match=r"user_rows.*lambdarec store init"):
            store.read_users_future("v1", ["u1"]).result(timeout=10)  # a version begun before buckets
        store.execute("DROP TABLE {ks}.fresh_users")
        with pytest.raises(StoreError, match="read user state"):
            store.read_fresh_users_future(["u1"]).result(timeout=10)
