"""Serving from Cassandra: a request's reads are sent without waiting and awaited on the event loop, so many
concurrent requests never queue for the store threads (and never time out doing so: known users are never
served degraded because the pool was busy)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.model.rows import FRESH_FORMAT, FreshUser
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.app import create_app
from tests.cassandra import throwaway_keyspace

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
ACTIVE_S = 1.0  # serving.fresh_state_active_s in the kept-state tests (its least)
CLIENTS = 16


@pytest.fixture(scope="module")
def published(cassandra_endpoint: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on a throwaway keyspace holding one published snapshot of 200 users."""
    root = tmp_path_factory.mktemp("cassandra-reads")
    with throwaway_keyspace(cassandra_endpoint, "lambdarec_reads") as url:
        settings = Settings.load(
            overrides={
                "store": {"url": url},
                "log": {"url": f"sqlite:///{root}/events"},
                "batch": {"top_k": 20, "train": {"iterations": 3, "factors": 8}, "neighbours": 10},
                # one store thread, and room for a loaded machine's slow answer: only a queue can time out
                "serving": {"store_threads": 1, "store_timeout_ms": 3000, "user_cache_size": 0},
            }
        )
        synthesize(SynthSpec(users=200, items=100, events=6_000, seed=5)).events.write_parquet(root / "log.parquet")
        with open_store(settings) as store:
            run_batch(settings, interactions=str(root / "log.parquet"), as_of=AS_OF, force=True, progress=False,
                      store=store)  # fmt: skip
        yield settings


def wait_ready(client: TestClient) -> None:
    for _ in range(300):
        if client.get("/readyz").status_code == 200:
            return
        threading.Event().wait(0.1)
    raise AssertionError(client.get("/readyz").text)


def test_concurrent_requests_do_not_queue_for_store_threads(published: Settings, tmp_path: Path) -> None:
    app = create_app(published)
    service = app.state.service
    release = threading.Event()
    with TestClient(app) as client:
        wait_ready(client)
        # the only store thread is busy for longer than a request may wait: a request that needs one times out
        client.portal.start_task_soon(service.gate.call, release.wait, 30.0)
        try:
            users = [f"u{n}" for n in range(CLIENTS * 2)]
            with ThreadPoolExecutor(CLIENTS) as pool:
                answers = list(pool.map(lambda u: client.get(f"/v1/users/{u}/recommendations?k=5"), users))
            metrics = client.get("/metrics").text
        finally:
            release.set()
    # every request's fresh state came through the per-turn reads (however many shared one), and the metrics say so
    assert service.fresh_reads.requests == len(users) and 1 <= service.fresh_reads.reads <= len(users)
    assert f"lambdarec_serving_fresh_read_requests_total {float(len(users))}" in metrics
    assert f"lambdarec_serving_fresh_reads_total {float(service.fresh_reads.reads)}" in metrics
    bodies = [a.json() for a in answers]
    assert [a.status_code for a in answers] == [200] * len(users)
    assert [b["user_id"] for b in bodies if b["degraded"]] == [], "known users served degraded"
    assert all(b["items"] and b["items"][0]["source"] != "popular" for b in bodies), "known users get their lists"


@pytest.mark.parametrize("reads", ["native", "driver"])
def test_a_repeat_is_answered_from_the_cache_until_the_users_fresh_state_changes(
    published: Settings, reads: str
) -> None:
    """The answer cache compares the fresh state Cassandra gives on every request: equal reads of one row compare
    equal (a hit), and a write by the speed layer in between is served at once; through the C++ driver and
    through cassandra-driver alike (``serving.cassandra_reads``), with every request reading the store
    (``serving.fresh_state_keep`` off)."""
    settings = published.model_copy(deep=True)
    settings.serving.trending_refresh_s = 3600.0  # no refresh in between: each would start the answers anew
    settings.serving.fresh_state_keep = "off"
    settings.serving.cassandra_reads = reads  # type: ignore[assignment]
    app = create_app(settings)
    with TestClient(app) as client, open_store(settings) as store:
        wait_ready(client)
        assert (app.state.service._native is not None) == (reads == "native")
        gauge = f"lambdarec_serving_cassandra_native_reads {1.0 if reads == 'native' else 0.0}"
        assert gauge in client.get("/metrics").text
        now = time.time()
        store.write_fresh_users([FreshUser(user_id="u3", recent=[("i5", now - 30)], updated_at=now - 30)])
        first = client.get("/v1/users/u3/recommendations?k=5").json()
        again = client.get("/v1/users/u3/recommendations?k=5").json()
        metrics = client.get("/metrics").text
        assert 'lambdarec_serving_answer_cache_total{result="hit"} 1.0' in metrics
        assert again["items"] == first["items"] and again["fresh_state_age_s"] >= first["fresh_state_age_s"]
        top = first["items"][0]["item_id"]
        hidden = FreshUser(user_id="u3", recent=[("i5", now - 30)], updated_at=now, hidden={top: now},
                           format=FRESH_FORMAT)  # fmt: skip
        store.write_fresh_users([hidden])
        after = client.get("/v1/users/u3/recommendations?k=5").json()
    assert top not in [i["item_id"] for i in after["items"]]


def test_native_reads_without_acsylla_refuse_to_start_and_auto_reads_through_the_driver(
    published: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "acsylla", None)  # as where no wheel was installed: the import fails
    settings = published.model_copy(deep=True)
    settings.serving.cassandra_reads = "native"
    refused = pytest.raises(RuntimeError, match=r"serving\.cassandra_reads is native, but acsylla cannot be imported")
    with refused, TestClient(create_app(settings)):
        pass
    settings.serving.cassandra_reads = "auto"
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        answer = client.get("/v1/users/u3/recommendations?k=5")
        assert app.state.service._native is None
    assert answer.status_code == 200 and not answer.json()["degraded"] and answer.json()["items"]


def test_native_reads_that_do_not_connect_leave_the_driver_reading_until_they_do(
    published: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambdarec.store import StoreUnavailableError
    from lambdarec.store.cassandra_native import NativeFreshReads
    from serving_layer import service as service_module

    opened = NativeFreshReads.open.__func__  # type: ignore[attr-defined]
    reachable = threading.Event()
    tries: list[bool] = []

    async def refused_until_reachable(cls: type[NativeFreshReads], *args: object) -> NativeFreshReads:
        tries.append(reachable.is_set())
        if not reachable.is_set():
            raise StoreUnavailableError("the C++ driver (acsylla) cannot read from Cassandra: refused, for a test")
        return await opened(cls, *args)

    monkeypatch.setattr(NativeFreshReads, "open", classmethod(refused_until_reachable))
    monkeypatch.setattr(service_module, "NATIVE_RETRY_S", 0.2)
    settings = published.model_copy(deep=True)
    settings.serving.cassandra_reads = "native"
    app = create_app(settings)
    service = app.state.service
    with TestClient(app) as client:
        wait_ready(client)
        first = client.get("/v1/users/u3/recommendations?k=5")  # read through cassandra-driver meanwhile
        assert service._native is None and tries and not any(tries)
        reachable.set()
        for _ in range(100):
            if service._native is not None:
                break
            threading.Event().wait(0.1)
        assert service._native is not None and tries[-1], tries  # tried again, and connected
        later = client.get("/v1/users/u3/recommendations?k=5")
    assert service._native is None  # closed with the service
    for answer in (first, later):
        assert answer.status_code == 200 and not answer.json()["degraded"] and answer.json()["items"]


def kept_live(client: TestClient, live: bool = True) -> None:
    """Wait until the worker's kept fresh states are in use (``live``) or not."""
    want = f"lambdarec_serving_kept_fresh_live {1.0 if live else 0.0}"
    for _ in range(200):
        if want in client.get("/metrics").text:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never {want}")


def test_a_kept_fresh_state_is_read_again_once_the_store_lists_its_change(published: Settings) -> None:
    """With ``serving.fresh_state_keep`` (auto, on Cassandra) a repeat of a user's request reads nothing from the
    store; a write of their fresh state (listed as a change) is served once the worker has polled the list."""
    settings = published.model_copy(deep=True)
    settings.serving.trending_refresh_s = 3600.0
    settings.serving.fresh_state_active_s = ACTIVE_S
    app = create_app(settings)
    service = app.state.service
    with TestClient(app) as client, open_store(settings) as store:
        wait_ready(client)
        kept_live(client)
        now = time.time()
        store.write_fresh_users([FreshUser(user_id="u7", recent=[("i5", now - 30)], updated_at=now - 30)])
        threading.Event().wait(ACTIVE_S)  # a user who changed lately is read on every request, not kept
        first = client.get("/v1/users/u7/recommendations?k=5").json()
        again = kept_repeat(client, service, "/v1/users/u7/recommendations?k=5")
        assert again["items"] == first["items"]
        metrics = client.get("/metrics").text
        assert 'lambdarec_serving_kept_fresh_total{result="hit"}' in metrics
        top = first["items"][0]["item_id"]
        hidden = FreshUser(user_id="u7", recent=[("i5", now - 30)], updated_at=time.time(), hidden={top: now},
                           format=FRESH_FORMAT)  # fmt: skip
        reads = service.fresh_reads.requests
        store.write_fresh_users([hidden])
        for _ in range(200):  # served within a poll or so of the write
            after = client.get("/v1/users/u7/recommendations?k=5").json()
            if top not in [i["item_id"] for i in after["items"]]:
                break
            threading.Event().wait(0.02)
        assert top not in [i["item_id"] for i in after["items"]], "the hidden item is still served"
        assert service.fresh_reads.requests > reads  # read again once listed
        dropped = re_total(client.get("/metrics").text, "dropped")
    assert dropped >= 1


def kept_repeat(client: TestClient, service: object, path: str) -> dict[str, object]:
    """A repeat of ``path`` answered without reading the store (its user's state kept), within a few tries: a
    loaded machine may see a poll late, and then every request reads."""
    reads = service.fresh_reads  # type: ignore[attr-defined]
    for _ in range(100):
        before = reads.requests
        answer = client.get(path).json()
        if reads.requests == before:
            return answer  # type: ignore[no-any-return]
        threading.Event().wait(0.05)
    raise AssertionError(f"every repeat of {path} read the store: nothing was kept")


def re_total(metrics: str, result: str) -> float:
    prefix = f'lambdarec_serving_kept_fresh_total{{result="{result}"}} '
    return next(float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix))


def test_nothing_kept_is_used_while_the_change_list_cannot_be_read(
    published: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change list that fails (here: its reads refused) stops the use of kept states: every request reads its
    user's state again, and a write is served at once; kept states are used again once the list answers."""
    from lambdarec.store import StoreUnavailableError
    from lambdarec.store.cassandra import CassandraStore

    settings = published.model_copy(deep=True)
    settings.serving.trending_refresh_s = 3600.0
    settings.serving.fresh_state_active_s = ACTIVE_S
    app = create_app(settings)
    service = app.state.service
    listing = threading.Event()
    listing.set()
    real = CassandraStore.read_fresh_changes_future

    def maybe_refused(self: CassandraStore, after_s: float) -> object:
        if not listing.is_set():
            raise StoreUnavailableError("the change list is refused, for a test")
        return real(self, after_s)

    monkeypatch.setattr(CassandraStore, "read_fresh_changes_future", maybe_refused)
    with TestClient(app) as client, open_store(settings) as store:
        wait_ready(client)
        kept_live(client)
        client.get("/v1/users/u8/recommendations?k=5")
        listing.clear()
        kept_live(client, live=False)
        reads = service.fresh_reads.requests
        first = client.get("/v1/users/u8/recommendations?k=5").json()
        top = first["items"][0]["item_id"]
        now = time.time()
        store.write_fresh_users([FreshUser(user_id="u8", updated_at=now, hidden={top: now}, format=FRESH_FORMAT)])
        after = client.get("/v1/users/u8/recommendations?k=5").json()
        assert service.fresh_reads.requests == reads + 2  # each request read the store
        assert top not in [i["item_id"] for i in after["items"]]  # at once: nothing kept was used
        listing.set()
        kept_live(client)
        threading.Event().wait(ACTIVE_S)  # the write above is applied by the first poll: u8 is active till then
        kept_repeat(client, service, "/v1/users/u8/recommendations?k=5")  # kept again


def test_fresh_state_keep_off_reads_every_request(published: Settings) -> None:
    settings = published.model_copy(deep=True)
    settings.serving.fresh_state_keep = "off"
    app = create_app(settings)
    service = app.state.service
    with TestClient(app) as client:
        wait_ready(client)
        reads = service.fresh_reads.requests
        for _ in range(3):
            assert client.get("/v1/users/u9/recommendations?k=5").status_code == 200
        assert service.fresh_reads.requests == reads + 3
        assert "lambdarec_serving_kept_fresh_live 0.0" in client.get("/metrics").text
