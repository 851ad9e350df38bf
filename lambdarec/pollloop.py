"""The loop of a long-running event-log consumer that writes somewhere else: the speed consumer (log -> store) and
the archiver (log -> lake).

Each cycle polls, writes and commits (the subclass's ``cycle``). A dependency that does not answer (an error in
the subclass's ``retried``) is waited out, not fatal: the loop records it in ``health`` (``/readyz`` says what it
waits for), backs off (capped exponential, with jitter; ``<section>.retry_*``), asks the next cycle to rewind so
nothing polled but unwritten is skipped, and resumes by itself. It gives up (re-raises) only once the dependency has
failed for longer than ``<section>.give_up_after_s`` (0: never). A commit refused by a rebalance is not a failure:
the partitions' new owner reads those records again, and this member rewinds.

:func:`run_until_stopped` is the process around it, shared by ``lambdarec speed run`` and ``lambdarec archive
run``: SIGTERM/SIGINT finish the cycle in hand, and a log or store that does not answer at start is waited out
with the same backoff.

Example
-------
>>> stats = run_until_stopped(SpeedConsumer, lambda: SpeedConsumer(settings, health=health),  # doctest: +SKIP
...                           settings.speed, health, until_idle_s=2.0)
>>> stats.processed
10000
"""

from __future__ import annotations

import abc
import signal
import time
from collections.abc import Callable
from typing import ClassVar, Generic, Protocol, TypeVar

from lambdarec.backoff import Backoff
from lambdarec.eventlog import CommitFailedError
from lambdarec.health import Health
from lambdarec.logs import get_logger

log = get_logger(__name__)
Loop = TypeVar("Loop", bound="PollLoop")
LAG_EVERY_S = 5.0  # how often a running loop refreshes its lag gauges (and so notices a dead broker when idle)


class RetrySettings(Protocol):
    """The retry options of a settings section (``speed``, ``archive``)."""

    retry_initial_s: float
    retry_max_s: float
    give_up_after_s: float


def backoff_for(cfg: RetrySettings) -> Backoff:
    """The backoff that ``cfg.retry_*`` and ``cfg.give_up_after_s`` describe."""
    return Backoff(cfg.retry_initial_s, cfg.retry_max_s, cfg.give_up_after_s)


Stats = TypeVar("Stats")


class PollLoop(abc.ABC, Generic[Stats]):
    """One member of a consumer group: ``run`` cycles until ``stop()`` or until drained, waiting out failures.

    A subclass names its log events (``name``), the errors of a dependency that may come back (``retried``) and
    which dependency an error is (``dependency``); it implements ``cycle``, ``drained``, ``result`` and ``close``.
    """

    name: ClassVar[str]
    retried: ClassVar[tuple[type[Exception], ...]]

    def __init__(self, health: Health, retry: RetrySettings) -> None:
        self.health = health
        self._backoff = backoff_for(retry)
        self._rewind = False  # after a failure: back to the committed positions before the next poll
        self._stopping = False  # a plain flag: stop() runs inside signal handlers, where locks can deadlock

    @classmethod
    @abc.abstractmethod
    def dependency(cls, exc: BaseException) -> str:
        """Which dependency ``exc`` (one of ``retried``) comes from: ``log``, ``store``, ``lake``."""

    @abc.abstractmethod
    def cycle(self, draining: bool) -> int:
        """One poll-write-commit cycle (rewinding first when asked to); how many records it handled.

        ``draining``: the loop runs until the log is drained (``--until-idle``), so a batch may close early.
        """

    @abc.abstractmethod
    def drained(self) -> bool:
        """Whether the group has handled the whole log (refreshing the lag gauges)."""

    @abc.abstractmethod
    def result(self) -> Stats:
        """What ``run`` returns once the loop ends."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group and release what this loop opened."""

    def __enter__(self: Loop) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh_lag(self) -> None:
        """Refresh the lag gauges (every ``LAG_EVERY_S`` while running)."""
        self.drained()

    def idle(self) -> None:
        """Called after a cycle that found nothing to do."""

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand (write, commit) and return."""
        self._stopping = True

    def settle(self) -> None:
        """Write and commit what a pipelined ``cycle`` left in flight (the loop's end, a rebalance, ``close``)."""

    def run(self, until_idle_s: float | None = None) -> Stats:
        """Cycle until ``stop()``, or until the log has been drained for ``until_idle_s`` seconds; ``result()``.

        Drained means the group has handled every partition to its end, not merely that this member polled
        nothing: partitions still held by a crashed member count as work until the group hands them over.
        """
        idle_since = lag_at = time.monotonic()
        while not self._stopping:
            try:
                busy = self.cycle(draining=until_idle_s is not None) > 0
                if not busy:
                    self.idle()
                if time.monotonic() - lag_at >= LAG_EVERY_S:
                    lag_at = time.monotonic()
                    self.refresh_lag()
                drained = busy or until_idle_s is None or self.drained()
            except CommitFailedError as exc:  # a rebalance took the partitions: their new owner replays them
                log.info(f"{self.name}.commit_refused", error=str(exc))
                self._rewind = True
                continue
            except self.retried as exc:
                self._wait_out(exc)
                idle_since = time.monotonic()
                continue
            self._backoff.reset()
            self.health.resumed()
            if busy or not drained:
                idle_since = time.monotonic()
            elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                break
        try:
            self.settle()
        except (CommitFailedError, *self.retried) as exc:  # not committed: delivered again, to whoever owns it
            log.warning(f"{self.name}.settle_failed", error=str(exc))
        return self.result()

    def _wait_out(self, exc: Exception) -> None:
        """Record what failed, back off, and rewind before the next poll: nothing polled but unwritten is lost,
        and nothing is committed past what was written. Re-raises once ``give_up_after_s`` has passed."""
        dependency = self.dependency(exc)
        self.health.waiting(dependency, f"{type(exc).__name__}: {exc}")
        if self._backoff.expired():
            log.error(f"{self.name}.giving_up", waiting_for=dependency, after_s=self._backoff.give_up_after_s)
            raise exc
        self._rewind = True
        delay = self._backoff.sleep(lambda: self._stopping)
        log.info(
            f"{self.name}.retrying", waiting_for=dependency, after_s=round(delay, 3), attempt=self._backoff.attempts
        )


def run_until_stopped(
    kind: type[PollLoop[Stats]],
    connect: Callable[[], PollLoop[Stats]],
    retry: RetrySettings,
    health: Health,
    until_idle_s: float | None = None,
) -> Stats | None:
    """Connect (``connect()``, waiting out a dependency that does not answer), then run until drained
    (``until_idle_s``) or stopped by SIGTERM/SIGINT, which finish the batch in hand; None if stopped before
    connecting. Errors of ``kind.retried`` are re-raised once ``retry.give_up_after_s`` has passed (0: never).
    """
    stop: list[bool] = []  # set by a signal, before or after the loop exists
    running: list[PollLoop[Stats]] = []

    def on_signal(*_: object) -> None:
        stop.append(True)
        for loop in running:
            loop.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    backoff = backoff_for(retry)
    while not stop:
        try:
            connected = connect()
        except kind.retried as exc:
            health.waiting(kind.dependency(exc), f"{type(exc).__name__}: {exc}")
            if backoff.expired():
                raise
            backoff.sleep(lambda: bool(stop))
            continue
        with connected:
            running.append(connected)
            if stop:
                connected.stop()
            return connected.run(until_idle_s)
    return None
