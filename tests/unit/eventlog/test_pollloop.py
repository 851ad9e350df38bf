"""The loop the speed consumer and the archiver share: a dependency that fails is waited out and the loop resumes,
a refused commit rewinds, ``give_up_after_s`` bounds the wait, and a stop before connecting ends cleanly."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from lambdarec.eventlog import CommitFailedError, EventLogUnavailableError
from lambdarec.health import Health
from lambdarec.pollloop import PollLoop, run_until_stopped


@dataclass
class Retry:
    retry_initial_s: float = 0.001
    retry_max_s: float = 0.002
    give_up_after_s: float = 0.0


def health() -> Health:
    reg = CollectorRegistry()
    return Health(
        "test", ("log",), Gauge("w", "", ["dependency"], registry=reg), Counter("r", "", ["dependency"], registry=reg)
    )


class Script(PollLoop[list[str]]):
    """Plays ``steps``: a number of records handled, or an exception to raise; drained once they run out."""

    name = "test"
    retried = (EventLogUnavailableError,)

    def __init__(self, steps: list[object], retry: Retry | None = None) -> None:
        super().__init__(health(), retry or Retry())
        self.steps, self.seen, self.closed = list(steps), [], False

    @classmethod
    def dependency(cls, exc: BaseException) -> str:
        return "log"

    def cycle(self, draining: bool) -> int:
        self.seen.append(f"rewind={self._rewind}")
        self._rewind = False
        step = self.steps.pop(0) if self.steps else 0
        if isinstance(step, BaseException):
            raise step
        return int(step)  # type: ignore[call-overload]

    def drained(self) -> bool:
        return not self.steps

    def result(self) -> list[str]:
        return self.seen

    def close(self) -> None:
        self.closed = True


def test_a_failing_dependency_is_waited_out_then_the_loop_rewinds_and_drains() -> None:
    loop = Script([5, EventLogUnavailableError("down"), EventLogUnavailableError("down"), 3])
    seen = loop.run(until_idle_s=0.05)
    assert seen[:5] == ["rewind=False", "rewind=False", "rewind=True", "rewind=True", "rewind=False"]
    assert loop.health.retries == 0 and loop.health.to_json() == {"ready": True, "waiting_for": None}


def test_a_refused_commit_rewinds_without_counting_as_an_outage() -> None:
    loop = Script([2, CommitFailedError("rebalanced"), 1])
    waited: list[tuple] = []
    loop.health.waiting = lambda *args: waited.append(args)  # type: ignore[method-assign]
    seen = loop.run(until_idle_s=0.05)
    assert seen[:3] == ["rewind=False", "rewind=False", "rewind=True"]
    assert waited == []


def test_give_up_after_s_reraises_the_last_error() -> None:
    loop = Script([EventLogUnavailableError("down")] * 10_000, Retry(give_up_after_s=0.05))
    with pytest.raises(EventLogUnavailableError, match="down"):
        loop.run(until_idle_s=1.0)
    assert loop.health.to_json()["waiting_for"] == "log"


def test_a_signal_before_the_loop_connects_ends_without_a_result() -> None:
    calls = []

    def connect() -> Script:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler run_until_stopped installed stops the wait
        raise EventLogUnavailableError("not there yet")

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert run_until_stopped(Script, connect, Retry(), health()) is None
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert len(calls) == 3


def test_run_until_stopped_runs_the_connected_loop_and_closes_it() -> None:
    loop = Script([4, 4])
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert run_until_stopped(Script, lambda: loop, Retry(), health(), until_idle_s=0.05) == loop.seen
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert loop.closed
