"""The Kafka broker killed (SIGKILL) mid-stream while events arrive over HTTP and from ``lambdarec events send``.

Clients do what the answers tell them: an HTTP 503 is retried with the same events (same ``event_id``s), and an
interrupted ``events send`` is rerun with ``--resume-from`` the line it reported. Checks, against the accepted
set: every accepted event is in the log and applied by the speed layer exactly once (by event id: a resent
event whose first append did land must not count twice); the speed consumer waits for the log and resumes by
itself; serving keeps answering; nothing is restarted.
"""

from __future__ import annotations

import json
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
    # `make chaos` only: it takes 100-270 s on a loaded 2-core machine (the broker's restart alone 30-45 s), too
    # long for every test run. It failed once in a CI-like run with the failing assertion not recorded; it passed
    # five runs since, and a failure now reports its timeline and the process logs (tests/chaos/conftest.py). The
    # speed layer's ~48 s wait there is the kill, the broker's restart and one request timeout (8 s), not a fault.
    # The regression tests of the findings it covers also run in every test run:
    # tests/unit/serving/test_events_outcome.py, tests/unit/eventlog/test_send_outcomes.py and
    # tests/integration/speed/test_speed_resilience.py.
    pytest.mark.chaos_full,
    pytest.mark.timeout(1500),
]

HTTP_EVENTS = range(0, 3000)
CLI_EVENTS = range(100_000, 120_000)


class Poster:
    """Posts ``numbers`` in batches of 50 from a thread, resending a batch (same ids) until it gets a 202."""

    def __init__(self, deployment: Deployment, base: str, numbers: range):
        self.deployment, self.base, self.numbers = deployment, base, list(numbers)
        self.answers: list[tuple[float, int, str]] = []
        self.accepted: set[int] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(0, len(self.numbers), 50):
            chunk = self.numbers[i : i + 50]
            while True:
                status, body = self.deployment.post(self.base, chunk)
                self.answers.append((time.monotonic(), status, body))
                if status == 202:
                    self.accepted.update(chunk)
                    break
                time.sleep(0.5)
            time.sleep(0.02)

    def start(self) -> Poster:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the HTTP client never got its events accepted"


def send_until_complete(deployment: Deployment, path: str) -> list[dict]:
    """Run ``events send`` and, while it reports an interruption, rerun it from the line it names."""
    reports, resume = [], 1
    for _ in range(20):
        done = deployment.lambdarec("events", "send", path, "--json", "--resume-from", str(resume), timeout=600)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        report = json.loads(done.stdout)
        reports.append(report)
        if done.returncode == 0:
            assert report["complete"] and report["first_unconfirmed_line"] is None
            return reports
        assert not report["complete"] and report["first_unconfirmed_line"] >= resume, report
        for r in report["ranges"][:-1]:
            assert r["outcome"] in ("appended", "unknown", "not_sent")
        resume = report["first_unconfirmed_line"]
        time.sleep(2)
    raise AssertionError(f"events send never completed: {reports[-1]}")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_broker_killed_mid_stream_during_http_and_cli_ingestion(deployment: Deployment, rng: random.Random, trial):
    services = deployment.services
    deployment.publish_first_snapshot()
    serve = deployment.start_serve()
    speed = deployment.start_speed()
    path = str(deployment.write_events_file(CLI_EVENTS))

    poster = Poster(deployment, serve, HTTP_EVENTS).start()
    cli_reports: list[dict] = []
    cli = threading.Thread(target=lambda: cli_reports.extend(send_until_complete(deployment, path)), daemon=True)
    cli.start()
    time.sleep(rng.uniform(1.0, 3.0))
    speed_states: list[dict] = []
    sampling = threading.Event()

    def sample() -> None:  # the speed layer's readiness over the whole outage, restart included
        while not sampling.is_set():
            speed_states.append(get(speed + "/readyz")[1] or {})
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deployment.mark("kafka killed")
    services.kill("kafka")
    time.sleep(rng.uniform(8, 12))
    deployment.mark("kafka starting")
    deployment.mark(f"kafka answers again ({services.up('kafka'):.1f} s to start)")
    poster.join(600)
    deployment.mark(f"HTTP client done: {len(poster.accepted)} events accepted, {len(poster.answers)} answers")
    cli.join(600)
    assert not cli.is_alive() and cli_reports, "events send did not finish"
    deployment.mark(f"events send done after {len(cli_reports)} runs")
    resumed = wait_until(lambda: get(speed + "/readyz")[0] == 200, "speed to resume", 120)
    deployment.mark(f"speed ready after another {resumed:.1f} s")
    sampling.set()
    sampler.join(10)

    assert deployment.alive("serve") and deployment.alive("speed"), "no process may exit or need a restart"
    assert any(s.get("waiting_for") == "log" for s in speed_states), speed_states[-3:]
    failed = [(status, body) for _, status, body in poster.answers if status != 202]
    for status, body in failed:  # honest answers only: never "nothing appended" unless true (checked below)
        assert status in (503, 0), (status, body)
    accepted = poster.accepted | set(CLI_EVENTS)
    logged = deployment.logged()
    assert set(logged) >= accepted, f"{len(accepted - set(logged))} accepted events are not in the log"
    deployment.mark(f"{len(logged)} events read back from the log")
    waited = wait_until(lambda: set(deployment.applied()) >= accepted, "every accepted event to be applied", 300)
    deployment.mark(f"every accepted event applied after {waited:.1f} s")
    applied = deployment.applied()
    assert set(applied) == accepted
    doubled = {n: c for n, c in applied.items() if c != 1}
    resent = {n: c for n, c in logged.items() if c > 1}
    print(f"kafka outage: {len(failed)} HTTP 503s, {len(cli_reports)} send runs, {len(resent)} events in the log "
          f"more than once, {len(doubled)} applied more than once")  # fmt: skip
    assert doubled == {}, f"{len(doubled)} events counted more than once (e.g. {sorted(doubled)[:5]})"
