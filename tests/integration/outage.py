"""Outages injected from outside into a real dependency of a long-running loop (the speed consumer, the archiver):
``Fault`` wraps the store, the lake or a log consumer and fails chosen calls, and ``run_through_outage`` runs the
loop until drained with the dependency down for a while in the middle, recording what its ``health`` said."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lambdarec.pollloop import PollLoop


def methods_id(methods: set[str]) -> str:
    """A parametrize id for a set of failing methods, the same in every process (a set's own order is not:
    parallel test workers must collect the same ids)."""
    return "+".join(sorted(methods))


class Fault:
    """Fails the named methods of ``target`` while ``down`` is set, or for the next ``times`` calls."""

    def __init__(self, target: Any, methods: set[str], error: type[Exception], times: int = 0):
        self.target, self.methods, self.error, self.times = target, methods, error, times
        self.down = threading.Event()
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if name not in self.methods:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set() or self.times > 0:
                self.times = max(self.times - 1, 0)
                self.failures += 1
                raise self.error(f"test outage ({name})")
            return attr(*args, **kwargs)

        return call


def run_through_outage(loop: PollLoop, fault: Fault, started: Callable[[], bool], seconds: float) -> list[dict]:
    """Run ``loop`` until drained; once ``started()`` is true, take ``fault``'s dependency down for ``seconds``.

    Returns what ``loop.health`` said during the outage; fails if the loop stopped or did not drain afterwards.
    """
    seen: list[dict] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run(until_idle_s=1.0)
        except BaseException as exc:  # reported below
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not started() and time.monotonic() < deadline and not done.is_set():
        time.sleep(0.005)
    fault.down.set()
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        seen.append(loop.health.to_json())
        time.sleep(0.05)
    fault.down.clear()
    assert done.wait(120), f"the {loop.name} loop did not resume and drain after the outage"
    thread.join()
    assert not errors, f"the {loop.name} loop stopped: {errors[0]!r}"
    return seen
