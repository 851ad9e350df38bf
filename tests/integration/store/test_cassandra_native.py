"""Serving's fresh-state reads through the C++ driver (acsylla) give exactly what the store's own read gives: the
same states (erasures applied, absent users left out, many users in several ``IN`` reads), the same decoded
objects while the bytes are unchanged, the same corrupt-row errors carrying the good rows, and store errors that
say what failed; coalesced per loop turn, each request gets only its users, on the event loop's own futures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from lambdarec.erasure import tombstone
from lambdarec.model.rows import FreshUser
from lambdarec.settings import StoreSettings
from lambdarec.store import CorruptRowError, StoreError, StoreUnavailableError, open_store
from lambdarec.store.cassandra import CassandraStore
from lambdarec.store.cassandra_fresh import IN_KEYS
from lambdarec.store.cassandra_native import NativeFreshReads
from serving_layer.fresh_reads import FreshReads
from tests.cassandra import throwaway_keyspace

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]
T = TypeVar("T")


def with_reads(settings: StoreSettings, store: CassandraStore, use: Callable[[NativeFreshReads], Awaitable[T]]) -> T:
    """``use(reads)`` on an event loop, the native reads opened on that loop and closed after."""

    async def main() -> T:
        reads = await NativeFreshReads.open(settings, store)
        try:
            return await use(reads)
        finally:
            await reads.close()

    return asyncio.run(main())


def test_native_reads_give_what_the_store_reads_give(ns_settings: StoreSettings, ns_store: CassandraStore) -> None:
    users = [FreshUser(user_id=f"u{n}", events=[(f"i{n}", 5.0, 1.0)], event_positions=[(0, n)], recent=[(f"i{n}", 5.0)],
                       updated_at=5.0 + n) for n in range(IN_KEYS + 30)]  # fmt: skip
    ns_store.write_fresh_users(users)
    ns_store.write_erasures([tombstone("u2", 100.0, {0: 500})], [])  # u2's events before the erasure are masked
    many = [u.user_id for u in users] + ["nobody", "u1"]  # more than one IN read, a repeat, an absent user

    async def reads(native: NativeFreshReads) -> list[dict[str, FreshUser]]:
        return [await native.read_fresh_users_future(ids) for ids in (many, ["u3"], ["nobody"], [])]

    got = with_reads(ns_settings, ns_store, reads)
    assert got[0] == ns_store.read_fresh_users(many) and len(got[0]) == IN_KEYS + 30
    assert got[0]["u2"] == ns_store.read_fresh_users(["u2"])["u2"] and got[0]["u2"].events == []
    assert got[1] == {"u3": ns_store.read_fresh_users(["u3"])["u3"]} and got[1]["u3"].recent == [("i3", 5.0)]
    assert got[2] == {} and got[3] == {}


def test_an_unchanged_state_is_the_object_decoded_before(ns_settings: StoreSettings, ns_store: CassandraStore) -> None:
    ns_store.write_fresh_users([FreshUser(user_id="u1", updated_at=5.0)])
    ns_store.keep_decoded_fresh(1 << 20)  # serving's map, shared by both drivers' reads

    async def reads(native: NativeFreshReads) -> tuple[FreshUser, FreshUser, FreshUser, FreshUser]:
        first = (await native.read_fresh_users_future(["u1"]))["u1"]
        again = (await native.read_fresh_users_future(["u1", "u9"]))["u1"]
        blocking = ns_store.read_fresh_users(["u1"])["u1"]
        ns_store.write_fresh_users([FreshUser(user_id="u1", updated_at=6.0)])
        return first, again, blocking, (await native.read_fresh_users_future(["u1"]))["u1"]

    first, again, blocking, rewritten = with_reads(ns_settings, ns_store, reads)
    assert again is first and blocking is first
    assert rewritten.updated_at == 6.0  # another row's bytes: decoded at once, never the state kept before


def test_a_corrupt_row_costs_only_itself(ns_settings: StoreSettings, ns_store: CassandraStore) -> None:
    ns_store.write_fresh_users([FreshUser(user_id=u, updated_at=5.0) for u in ("u1", "u3")])
    ns_store.execute("UPDATE {ks}.fresh_users SET data = ? WHERE ns = ? AND user_id = ?", (b"\xc1", ns_store._ns, "u3"))

    async def reads(native: NativeFreshReads) -> BaseException | None:
        try:
            await native.read_fresh_users_future(["u1", "u3"])
        except CorruptRowError as exc:
            return exc
        return None

    caught = with_reads(ns_settings, ns_store, reads)
    assert isinstance(caught, CorruptRowError) and caught.keys == ["u3"] and list(caught.rows) == ["u1"]
    assert "does not decode" in str(caught)


def test_a_turn_of_requests_is_one_read_on_the_loops_own_futures(
    ns_settings: StoreSettings, ns_store: CassandraStore
) -> None:
    ns_store.write_fresh_users([FreshUser(user_id=u, recent=[(f"i-{u}", 5.0)], updated_at=5.0) for u in ("u1", "u3")])
    ns_store.execute("UPDATE {ks}.fresh_users SET data = ? WHERE ns = ? AND user_id = ?", (b"\xc1", ns_store._ns, "u4"))
    coalesced = FreshReads()

    async def turn(native: NativeFreshReads) -> list[object]:
        asks = [["u1", "nobody"], ["u3", "u1"], ["u0"], ["u3"], ["u4", "u1"]]
        futures = [coalesced.read(native, ids) for ids in asks]
        assert all(isinstance(f, asyncio.Future) for f in futures)  # settled on this loop: no thread hop each
        futures[3].cancel()  # a request that gives up costs its neighbours nothing
        outcomes: list[object] = []
        for future in futures:
            try:
                outcomes.append(await asyncio.wait_for(future, 10))
            except (asyncio.CancelledError, CorruptRowError) as exc:
                outcomes.append(type(exc).__name__ if isinstance(exc, asyncio.CancelledError) else exc)
        return outcomes

    got = with_reads(ns_settings, ns_store, turn)
    want = ns_store.read_fresh_users(["u1", "u3"])
    assert (coalesced.reads, coalesced.requests) == (1, 5)
    assert got[:4] == [{"u1": want["u1"]}, {"u3": want["u3"], "u1": want["u1"]}, {}, "CancelledError"]
    bad = got[4]
    assert isinstance(bad, CorruptRowError) and bad.keys == ["u4"] and bad.rows == {"u1": want["u1"]}


def test_a_failed_read_is_a_store_error_naming_it(cassandra_endpoint: tuple[str, int]) -> None:
    # its own keyspace: the table it drops must not vanish under the other tests sharing the session's keyspace
    with throwaway_keyspace(cassandra_endpoint, "lambdarec_nat") as url, open_store(StoreSettings(url=url)) as store:
        assert isinstance(store, CassandraStore)
        coalesced = FreshReads()

        async def reads(native: NativeFreshReads) -> list[BaseException]:
            await native.read_fresh_users_future(["u1"])
            store.execute("DROP TABLE {ks}.fresh_users")
            failed: list[BaseException] = []
            for ids in (["u1"], ["u1", "u2"]):
                try:
                    await native.read_fresh_users_future(ids)
                except StoreError as exc:
                    failed.append(exc)
            turn = [coalesced.read(native, ids) for ids in (["u1"], ["u2", "u3"])]
            failed += [exc for exc in await asyncio.gather(*turn, return_exceptions=True)]
            return failed

        failed = with_reads(StoreSettings(url=url), store, reads)
        assert len(failed) == 4, failed
        assert all(isinstance(f, StoreUnavailableError) and "read user state" in str(f) for f in failed), failed


def test_a_cluster_that_does_not_answer_is_named(cassandra_endpoint: tuple[str, int]) -> None:
    host, _ = cassandra_endpoint
    settings = StoreSettings(url=f"cassandra://{host}:1/nowhere", cassandra={"connect_timeout_s": 1.0})

    async def main() -> None:
        await NativeFreshReads.open(settings, store=None)  # type: ignore[arg-type]  # never reached

    with pytest.raises(StoreUnavailableError, match=rf"C\+\+ driver.*{host}:1"):
        asyncio.run(main())
