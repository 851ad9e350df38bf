"""Capped exponential backoff with jitter, for long-running processes that wait out a dependency.

The n-th wait is drawn uniformly from ``[d/2, d]`` with ``d = min(max_s, initial_s * 2**n)``: growing, capped,
and spread so that many processes do not knock on a recovering broker or store at the same instant.

Example
-------
>>> backoff = Backoff(initial_s=0.1, max_s=2.0, seed=1)
>>> [round(backoff.next_delay(), 2) for _ in range(7)]
[0.06, 0.18, 0.35, 0.5, 1.2, 1.45, 1.65]
>>> backoff.reset(); backoff.attempts
0
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Delays between attempts; :meth:`reset` after a success."""

    def __init__(self, initial_s: float, max_s: float, give_up_after_s: float = 0.0, seed: int | None = None):
        """``give_up_after_s``: :meth:`expired` turns true this long after the first failure (0: never)."""
        self.initial_s = initial_s
        self.max_s = max_s
        self.give_up_after_s = give_up_after_s
        self.attempts = 0
        self.failing_since: float | None = None
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy

    def next_delay(self) -> float:
        """The next wait in seconds; counts an attempt."""
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        cap = min(self.max_s, self.initial_s * 2 ** min(self.attempts, 62))
        self.attempts += 1
        return self._rng.uniform(cap / 2, cap)

    def expired(self) -> bool:
        """Whether the dependency has been failing for longer than ``give_up_after_s`` (never when 0)."""
        return (
            self.give_up_after_s > 0
            and self.failing_since is not None
            and time.monotonic() - self.failing_since > self.give_up_after_s
        )

    def sleep(self, stopping: Callable[[], bool], tick_s: float = 0.1) -> float:
        """Wait the next delay, in ticks, returning early once ``stopping()``; the delay drawn."""
        delay = self.next_delay()
        deadline = time.monotonic() + delay
        while not stopping() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(tick_s, left))
        return delay

    def reset(self) -> None:
        """The dependency answered: start again from ``initial_s``."""
        self.attempts = 0
        self.failing_since = None
