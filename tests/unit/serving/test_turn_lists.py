"""The lists asked for in one event-loop turn (SQLite store, read inline): one store read for all of them, each
answered as it would have been alone, and each request's failure its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import serving_layer.user_list as user_list_module
from lambdarec.settings import Settings
from serving_layer.app import create_app
from serving_layer.recommend import RecommendQuery
from serving_layer.service import Service
from serving_layer.turn_lists import MAX_LISTS
from serving_layer.user_list import user_list

USERS = [f"u{n}" for n in range(1, 13)] + ["nobody"]  # known users and one the snapshot never saw


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Service]:
    """The app's service with its lifespan running and a snapshot loaded; the answer cache off (every list
    ranked)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        service: Service = app.state.service
        for _ in range(500):
            if service.models.model is not None:
                break
            await asyncio.sleep(0.02)
        assert service.models.model is not None, "no snapshot loaded"
        service.answers.max_bytes = 0
        yield service


def counted_reads(service: Service) -> list[list[str]]:
    """The user ids of each fresh-state read the store is asked for from now on."""
    store, calls = service.store(), []
    read = store.read_fresh_users

    def counting(user_ids: Any) -> Any:
        calls.append(list(user_ids))
        return read(user_ids)

    store.read_fresh_users = counting  # type: ignore[method-assign]
    return calls


def query(user_id: str) -> RecommendQuery:
    return RecommendQuery(user_id, k=10, session_items=("i3",), explain=True)


def metric(service: Service, name: str, labels: dict[str, str] | None = None) -> float:
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


def run(settings: Settings, body: Callable[[Service], Awaitable[None]]) -> None:
    async def main() -> None:
        async with started(settings) as service:
            await asyncio.wait_for(body(service), 30)  # a batch never answered fails here, not at pytest's limit

    asyncio.run(main())


def test_the_lists_of_one_turn_share_one_store_read_and_answer_as_each_alone(published) -> None:
    settings, _ = published

    async def body(service: Service) -> None:
        reads = counted_reads(service)
        together = await asyncio.gather(*(user_list(service, query(u)) for u in USERS))
        assert len(reads) == 1 and sorted(reads[0]) == sorted(USERS)
        assert metric(service, "lambdarec_serving_list_batches_total") == 1
        assert metric(service, "lambdarec_serving_list_batch_lists_total") == len(USERS)
        alone = [await user_list(service, query(u)) for u in USERS]
        assert len(reads) == 1 + len(USERS)  # one read a request when each is alone in its turn
        assert together == alone  # bytes, degraded reason, arm headers
        assert all(b'"items":[{' in answer for answer, _, _ in together)  # every user got a list

    run(settings, body)


def test_a_list_that_fails_fails_alone(published, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, _ = published
    answer_now = user_list_module.answer_now

    def broken_for_u3(service: Service, served: Any, state: Any, degraded: bool) -> Any:
        if served.query.user_id == "u3":
            raise RuntimeError("a bug in u3's list")
        return answer_now(service, served, state, degraded)

    monkeypatch.setattr(user_list_module, "answer_now", broken_for_u3)

    async def body(service: Service) -> None:
        got = await asyncio.gather(*(user_list(service, query(u)) for u in USERS), return_exceptions=True)
        failed = {u: g for u, g in zip(USERS, got, strict=True) if isinstance(g, BaseException)}
        assert list(failed) == ["u3"] and "a bug in u3's list" in str(failed["u3"])
        assert all(isinstance(g, tuple) and g[1] is None for u, g in zip(USERS, got, strict=True) if u != "u3")

    run(settings, body)


def test_a_store_that_fails_serves_the_whole_turn_degraded_and_counts_each_list(published) -> None:
    settings, _ = published

    async def body(service: Service) -> None:
        await user_list(service, query("u1"))  # remembered: served from memory when the store fails
        store = service.store()

        def failing(user_ids: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        store.read_fresh_users = failing  # type: ignore[method-assign]
        got = await asyncio.gather(*(user_list(service, query(u)) for u in USERS))
        assert {reason for _, reason, _ in got} == {"store-unavailable"}
        labels = {"reason": "store-unavailable"}
        assert metric(service, "lambdarec_serving_degraded_total", labels) == len(USERS)
        by_user = dict(zip(USERS, got, strict=True))
        assert b'"source":"batch"' in by_user["u1"][0]  # its remembered batch row still ranks its list

    run(settings, body)


def test_a_turn_larger_than_a_batch_is_answered_in_several(published) -> None:
    settings, _ = published
    users = [f"u{n}" for n in range(1, MAX_LISTS + 6)]

    async def body(service: Service) -> None:
        reads = counted_reads(service)
        got = await asyncio.gather(*(user_list(service, query(u)) for u in users))
        assert [len(r) for r in reads] == [MAX_LISTS, 5]
        assert metric(service, "lambdarec_serving_list_batches_total") == 2
        assert all(reason is None for _, reason, _ in got)

    run(settings, body)


def test_a_request_that_went_away_before_its_turn_ended_is_not_ranked(published) -> None:
    settings, _ = published

    async def body(service: Service) -> None:
        reads = counted_reads(service)
        tasks = [asyncio.ensure_future(user_list(service, query(u))) for u in ("u1", "u2", "u3")]
        await asyncio.sleep(0)  # every task waits on its turn's batch, which is not answered yet
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert isinstance(done[0], tuple) and isinstance(done[2], tuple)
        assert reads == [["u1", "u3"]]
        assert metric(service, "lambdarec_serving_list_batch_lists_total") == 2

    run(settings, body)
