"""Cassandra killed (SIGKILL) under a running ``serve`` and ``speed run``, then brought back with ``services up``.

Checks, against the set of events the log accepted: no event lost and none counted twice by the speed layer;
serving answers every request during the outage, degraded and within its budget; readiness tells the truth over
time (not ready during the outage, ready again after); both processes recover by themselves, none restarted; the
keyspace survives the kill (``deploy/local`` runs Cassandra durably).
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.chaos.conftest import TRIALS
from tests.chaos.deployment import Deployment, get, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cassandra,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]


class Load:
    """Requests in a loop from a thread: (started, latency s, status, degraded) per recommendation request."""

    def __init__(self, base: str, rng: random.Random):
        self.base, self.rng = base, rng
        self.samples: list[tuple[float, float, int, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            user = f"u{self.rng.randrange(250)}"
            started = time.monotonic()
            status, body = get(f"{self.base}/v1/users/{user}/recommendations?k=5", timeout=10)
            took = time.monotonic() - started
            self.samples.append((started, took, status, bool(body and body.get("degraded"))))
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def between(self, start: float, end: float) -> list[tuple[float, float, int, bool]]:
        return [s for s in self.samples if start <= s[0] <= end]


def post_all(deployment: Deployment, base: str, numbers: list[int]) -> set[int]:
    accepted = set()
    for i in range(0, len(numbers), 50):
        chunk = numbers[i : i + 50]
        status, body = deployment.post(base, chunk)
        assert status == 202, body
        accepted.update(chunk)
    return accepted


@pytest.mark.parametrize("trial", range(TRIALS))
def test_cassandra_killed_under_serving_and_the_consumer(deployment: Deployment, rng: random.Random, trial: int):
    services = deployment.services
    version = deployment.publish_first_snapshot()
    serve = deployment.start_serve()
    speed = deployment.start_speed()
    accepted = post_all(deployment, serve, list(range(600)))
    wait_until(lambda: set(deployment.applied()) == accepted, "the first events to be applied", 120)

    with Load(serve, rng) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        services.kill("cassandra")
        # Events keep arriving (Kafka is up): the log accepts them, the speed layer must not lose them.
        accepted |= post_all(deployment, serve, list(range(600, 900)))
        wait_until(lambda: get(serve + "/readyz")[0] == 503, "serve to report the store unavailable", 30)
        status, body = get(serve + "/readyz")
        assert status == 503 and any("store unavailable" in r for r in body["reasons"]), body
        wait_until(lambda: get(speed + "/readyz")[1].get("waiting_for") == "store", "speed to wait for the store", 60)
        time.sleep(rng.uniform(3, 6))
        outage = load.between(killed_at + 1.0, time.monotonic())  # after the first failures opened degraded mode
        restarted_at = time.monotonic()
        took_up = services.up("cassandra")
        back_at = time.monotonic()
        recovered_s = wait_until(lambda: get(serve + "/readyz")[0] == 200, "serve to be ready again", 90)
        wait_until(lambda: get(speed + "/readyz")[0] == 200, "speed to resume", 90)

        def normal_again() -> bool:  # the last 20 answers personalised from the store again
            last = load.samples[-20:]
            return len(last) == 20 and last[0][0] > back_at and not any(degraded for *_, degraded in last)

        normal_s = wait_until(normal_again, "answers that are not degraded", 30) + recovered_s

    assert deployment.alive("serve") and deployment.alive("speed"), "no process may exit or need a restart"
    # During the outage: every request answered (degraded), none waiting on the dead store beyond its budget.
    assert len(outage) >= 20, len(outage)
    assert all(status == 200 for _, _, status, _ in outage), {s for _, _, s, _ in outage}
    assert sum(degraded for *_, degraded in outage) >= 0.9 * len(outage)
    latencies = sorted(took for _, took, _, _ in outage)
    p99, worst = latencies[int(0.99 * (len(latencies) - 1))], latencies[-1]
    print(
        f"outage: {len(outage)} requests, p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms; cassandra back in "
        f"{took_up:.0f} s, serve ready {recovered_s:.1f} s and answering normally {normal_s:.1f} s later"
    )
    assert worst < 1.0, f"a degraded answer took {worst * 1000:.0f} ms (store budget: serving.store_timeout_ms)"
    assert restarted_at < back_at
    # The keyspace survived the kill (finding 4), with the snapshot pointer serving reads.
    pinged = deployment.lambdarec("store", "ping", "--json", timeout=120)
    assert pinged.returncode == 0, pinged.stderr[-2000:]
    assert version in pinged.stdout
    # No event lost, none counted twice.
    wait_until(lambda: set(deployment.applied()) >= accepted, "every accepted event to be applied", 180)
    applied = deployment.applied()
    assert set(applied) == accepted
    assert {n: c for n, c in applied.items() if c != 1} == {}
