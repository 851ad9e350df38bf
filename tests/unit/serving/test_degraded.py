"""When the store fails or is slow: lists from memory, `degraded: true` and the header, /readyz 503, recovery."""

from __future__ import annotations

import time

import pytest

from lambdarec.settings import Settings
from lambdarec.store import StoreUnavailableError, open_store
from serving_layer.recommend import DEGRADED_HEADER
from tests.unit.serving.conftest import serving, wait_for


class Switchable:
    """The real store, until told to fail (``broken``) or to stall every call (``delay_s``)."""

    def __init__(self, settings: Settings):
        self.store = open_store(settings)
        self.broken = False
        self.delay_s = 0.0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self.store, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            if self.broken:
                raise StoreUnavailableError(f"test: the store is down ({name})")
            time.sleep(self.delay_s)
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def switchable(fresh_store):
    settings, _ = fresh_store
    store = Switchable(settings)
    yield settings, store
    store.store.close()


def test_a_failing_store_serves_from_memory_marked_degraded(switchable) -> None:
    settings, store = switchable
    with serving(settings, store=store) as client:  # type: ignore[arg-type]
        healthy = client.get("/v1/users/u1/recommendations", params={"k": 5})
        assert healthy.status_code == 200 and DEGRADED_HEADER not in healthy.headers
        store.broken = True
        seen = client.get("/v1/users/u1/recommendations", params={"k": 5})
        assert seen.status_code == 200
        assert seen.headers[DEGRADED_HEADER] == "store-unavailable"
        assert seen.json()["degraded"] is True
        assert seen.json()["items"] == healthy.json()["items"]  # the user's last read, still personalised
        unseen = client.get("/v1/users/u2/recommendations", params={"k": 5, "session_items": "i3"})
        assert unseen.status_code == 200 and unseen.json()["degraded"] is True
        assert {i["source"] for i in unseen.json()["items"]} <= {"session", "trending", "popular"}
        batch = client.post("/v1/recommendations", json={"users": ["u1", "u2"], "k": 3})
        assert batch.status_code == 200 and batch.json()["degraded"] is True
        assert batch.headers[DEGRADED_HEADER] == "store-unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "store unavailable" in ready.json()["reasons"][0]
        assert 'lambdarec_serving_degraded_total{reason="store-unavailable"}' in client.get("/metrics").text
        store.broken = False
        time.sleep(settings.serving.store_retry_s)
        wait_for(lambda: client.get("/readyz").status_code == 200, "readiness after the store recovers")
        assert client.get("/v1/users/u1/recommendations").json()["degraded"] is False


def test_a_slow_store_is_cut_off_at_the_timeout(fresh_store) -> None:
    settings, _ = fresh_store
    settings = settings.model_copy(deep=True)
    settings.serving.store_reads = "thread"
    settings.serving.store_timeout_ms = 50
    settings.serving.store_probe_timeout_ms = 200
    settings.store.request_timeout_s = 0.5  # the trending watcher's read
    store = Switchable(settings)
    try:
        with serving(settings, store=store) as client:  # type: ignore[arg-type]
            store.delay_s = 2.0
            started = time.perf_counter()
            response = client.get("/v1/users/u1/recommendations")
            took = time.perf_counter() - started
            assert response.status_code == 200 and response.json()["degraded"] is True
            assert took < 0.5, f"the request waited {took:.2f} s for a stalled store"
            wait_for(lambda: client.get("/readyz").status_code == 503, "degraded mode after a sustained failure")
            started = time.perf_counter()
            assert client.get("/v1/users/u3/recommendations").json()["degraded"] is True
            assert time.perf_counter() - started < 0.05  # degraded mode: no waiting on a store known to be down
    finally:
        store.delay_s = 0.0
        store.store.close()
