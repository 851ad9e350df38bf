"""The store's health has hysteresis (no flapping under load), readiness reads it, and a 503 names the store."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import Future

import pytest

from serving_layer.store_gate import StoreGate, StoreUnavailable
from serving_layer.store_health import StoreHealth
from tests.unit.serving.conftest import serving, wait_for
from tests.unit.serving.test_degraded import Switchable


def test_degraded_mode_needs_a_sustained_failure_and_a_sustained_success() -> None:
    health = StoreHealth(fail_after=3, recover_after=2)
    for _ in range(10):  # a busy store: every other call too slow
        health.failure("timeout")
        health.success()
    assert not health.degraded
    for _ in range(3):
        health.failure("down")
    assert health.degraded and "down" in health.reason()
    health.success()
    health.failure("down again")
    health.success()
    assert health.degraded, "one success between failures does not end degraded mode"
    health.success()
    assert not health.degraded


def test_calls_that_fail_together_are_one_failure_not_a_streak() -> None:
    """16 concurrent requests timing out in the same slow moment of the store are one failure: degraded mode
    (every request skipping the store, known users served from memory) needs failures in a row over time."""
    health = StoreHealth(fail_after=3, recover_after=1)
    in_flight_since = time.monotonic()
    for _ in range(16):  # all sent before the first of them failed
        health.failure("timeout", started=in_flight_since)
    assert not health.degraded
    health.failure("timeout", started=time.monotonic())  # the next calls, sent after that moment, fail too
    assert not health.degraded
    health.failure("timeout", started=time.monotonic())
    assert health.degraded, "three failures in a row, one after the other"
    health.failure("legacy caller", started=None)  # a caller that does not say when it started counts alone
    assert health.degraded


class Flaky(Switchable):
    """Every ``every``-th call stalls past the request timeout, as a healthy store under load sometimes does."""

    def __init__(self, settings, every: int):  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self._calls = itertools.count()
        self.every = every

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self.store, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            if next(self._calls) % self.every == 0:
                time.sleep(0.6)  # past a request's budget, inside a probe's
            return attr(*args, **kwargs)

        return call


def test_occasional_slow_answers_under_load_do_not_flap_readiness(fresh_store, capfd) -> None:
    # Before: one call over serving.store_timeout_ms made /readyz 503 and logged unavailable/recovered each time.
    settings, _ = fresh_store
    settings = settings.model_copy(deep=True)
    settings.serving.store_reads = "thread"
    settings.serving.store_timeout_ms = 400  # the fast calls stay well inside it even on a busy machine
    settings.serving.snapshot_poll_s = settings.serving.trending_refresh_s = 0.5  # background calls of a real rate
    store = Flaky(settings, every=3)
    try:
        with serving(settings, store=store) as client:  # type: ignore[arg-type]
            codes = []
            for n in range(24):
                client.get(f"/v1/users/u{n % 7}/recommendations", params={"k": 5})
                codes.append(client.get("/readyz").status_code)
            assert codes == [200] * 24
    finally:
        store.store.close()
    assert "serving.store_unavailable" not in capfd.readouterr().err


@pytest.mark.parametrize("path", ["/v1/users/u1/recommendations", "/v1/popular", "/v1/items/i1/similar"])
def test_with_the_store_down_from_the_start_the_503_names_the_store(fresh_store, path: str) -> None:
    settings, _ = fresh_store
    store = Switchable(settings)
    store.broken = True
    try:
        with serving(settings, store=store, ready=False) as client:  # type: ignore[arg-type]
            wait_for(lambda: client.get("/readyz").status_code == 503, "not ready")
            response = client.get(path)
            assert response.status_code == 503
            message = response.json()["message"]
            assert "store" in message and "unavailable" in message and "test: the store is down" in message
            ready = client.get("/readyz").json()
            assert any("store unavailable" in r for r in ready["reasons"])
            store.broken = False
            wait_for(lambda: client.get("/readyz").status_code == 200, "recovery without a restart", 10)
            assert client.get(path).status_code == 200
    finally:
        store.store.close()


def test_store_errors_do_not_wait_past_their_budget_once_degraded(fresh_store) -> None:
    settings, _ = fresh_store
    settings = settings.model_copy(deep=True)
    settings.serving.store_reads = "thread"
    store = Switchable(settings)
    try:
        with serving(settings, store=store) as client:  # type: ignore[arg-type]
            store.broken = True
            wait_for(lambda: client.get("/readyz").status_code == 503, "degraded mode")
            took = []
            for n in range(200):
                started = time.perf_counter()
                assert client.get(f"/v1/users/u{n}/recommendations").json()["degraded"] is True
                took.append(time.perf_counter() - started)
            took.sort()
            assert took[int(0.99 * len(took))] < 0.05, f"p99 {took[int(0.99 * len(took))] * 1000:.0f} ms"
    finally:
        store.store.close()


def test_an_answer_in_before_a_busy_event_loop_looks_is_used_not_thrown_away() -> None:
    """The store answered within the timeout, but the event loop, busy with other requests, saw it only after the
    timeout fired: the request is served from the answer, not degraded. A read still unanswered times out."""
    gate = StoreGate(timeout_s=0.05, retry_s=1.0, threads=1)

    async def scenario() -> tuple[list[object], str]:
        loop = asyncio.get_running_loop()
        answered: Future[str] = Future()
        threading.Timer(0.01, answered.set_result, ("rows",)).start()  # the store answers after 10 ms
        loop.call_soon(time.sleep, 0.2)  # other requests hold the loop for 200 ms, past the 50 ms budget
        got = await gate.wait_all([answered], "read_states")
        silent: Future[str] = Future()
        try:
            await gate.wait_all([silent], "read_states")
        except StoreUnavailable as exc:
            return got, str(exc)
        return got, "no timeout"

    got, timed_out = asyncio.run(scenario())
    gate.close()
    assert got == ["rows"]
    assert "longer than 50 ms (serving.store_timeout_ms)" in timed_out
