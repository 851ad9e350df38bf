"""The Cassandra store's non-blocking reads (what serving awaits on its event loop) give exactly what the
blocking reads give: the same rows, the same corrupt-row errors carrying the good rows, the same store errors."""

from __future__ import annotations

import asyncio
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
from serving_layer.fresh_reads import FreshReads
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
    store.keep_decoded_fresh(1 << 20)  # serving's: an unchanged row, read either way, is the state decoded before
    kept = store.read_fresh_users_future(ids).result(timeout=10)
    assert kept == fresh and store.read_fresh_users(["u3"])["u3"] is kept["u3"]
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


def turn(store: CassandraStore, asks: list[list[str]], cancel: int | None = None) -> tuple[FreshReads, list[object]]:
    """``asks`` read through one :class:`FreshReads` in one event-loop turn (``cancel``: that request gives up
    before the turn ends); each request's states, or the exception it got."""
    reads = FreshReads()

    async def main() -> list[object]:
        futures = [reads.read(store, ids) for ids in asks]
        if cancel is not None:
            futures[cancel].cancel()
        await asyncio.sleep(0)  # the turn ends: the reads go out together
        outcomes: list[object] = []
        for n, future in enumerate(futures):
            if n == cancel:
                outcomes.append(None)
                continue
            try:
                outcomes.append(await asyncio.wait_for(asyncio.wrap_future(future), 10))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    return reads, asyncio.run(main())


def test_the_fresh_reads_of_one_loop_turn_are_one_read_and_each_request_gets_only_its_users(
    store: CassandraStore,
) -> None:
    published(store, 4)
    store.write_fresh_users([FreshUser(user_id=u, recent=[(f"i-{u}", 5.0)], updated_at=5.0) for u in ("u1", "u3")])
    reads, got = turn(store, [["u1", "nobody"], ["u3", "u1"], ["u0"]])
    assert (reads.reads, reads.requests) == (1, 3)
    want = store.read_fresh_users(["u1", "u3"])
    assert got == [{"u1": want["u1"]}, {"u3": want["u3"], "u1": want["u1"]}, {}]
    assert got[1]["u3"].recent == [("i-u3", 5.0)]
    # a request that gives up before the read is back costs its neighbours nothing
    reads, got = turn(store, [["u1"], ["u3"]], cancel=0)
    assert reads.reads == 1 and got[1] == {"u3": want["u3"]}


def test_a_corrupt_fresh_row_costs_only_the_requests_that_asked_for_it(store: CassandraStore) -> None:
    store.write_fresh_users([FreshUser(user_id=u, updated_at=5.0) for u in ("u1", "u3")])
    store.execute("UPDATE {ks}.fresh_users SET data = ? WHERE ns = ? AND user_id = ?", (b"\xc1", store._ns, "u3"))
    _, got = turn(store, [["u1"], ["u3", "u1"]])
    assert got[0] == {"u1": store.read_fresh_users(["u1"])["u1"]}
    assert isinstance(got[1], CorruptRowError) and got[1].keys == ["u3"] and list(got[1].rows) == ["u1"]
    assert "does not decode" in str(got[1])  # the store's reason, for serving's corrupt-row log


def test_a_failed_coalesced_read_fails_every_request_of_its_turn_with_the_store_error(
    cassandra_endpoint: tuple[str, int],
) -> None:
    with throwaway_keyspace(cassandra_endpoint, "lambdarec_fr") as url, open_store(StoreSettings(url=url)) as store:
        assert isinstance(store, CassandraStore)
        turn(store, [["u1"], ["u2"]])  # prepared: the next failure comes from the server
        store.execute("DROP TABLE {ks}.fresh_users")
        _, got = turn(store, [["u1"], ["u2", "u3"]])
        assert all(isinstance(g, StoreError) and "read user state" in str(g) for g in got), got
