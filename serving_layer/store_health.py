"""The store's health with hysteresis: degraded after a sustained failure, healthy after a sustained success.

One slow answer under load must not send every request to the degraded path (and back a moment later): serving
turns degraded only after ``fail_after`` store calls in a row have failed, and healthy again only after
``recover_after`` calls in a row have succeeded. Requests that were in flight together when one of them failed
are one failure, not a streak: a slow moment of the store times out every concurrent request at once. Each
change is logged once (``serving.store_unavailable`` / ``serving.store_recovered``), so the warnings do not flap.

Example
-------
>>> health = StoreHealth(fail_after=2, recover_after=2)
>>> health.failure("timeout"); health.degraded
False
>>> health.failure("timeout"); health.degraded
True
>>> health.success(); health.degraded
True
>>> health.success(); health.degraded
False
"""

from __future__ import annotations

import math
import threading
import time

from lambdarec.logs import get_logger

log = get_logger(__name__)


class StoreHealth:
    """Counts consecutive outcomes of store calls and says whether serving is in degraded mode."""

    def __init__(self, fail_after: int, recover_after: int):
        self.fail_after = fail_after
        self.recover_after = recover_after
        self.degraded = False
        self.checked = False  # whether any call has finished yet
        self.since = time.monotonic()  # when the current state began
        self.last_error: str | None = None
        self._failures = 0
        self._successes = 0
        self._failed_at = -math.inf  # time.monotonic() of the last failure
        self._lock = threading.Lock()

    def failure(self, reason: str, started: float | None = None) -> None:
        """A store call failed or timed out; ``fail_after`` of these in a row begin degraded mode.

        ``started``: the call's ``time.monotonic()`` when it was sent; a call sent before the last failure was
        in flight with it and fails in the same slow moment, so it does not lengthen the streak.
        """
        with self._lock:
            self.checked = True
            self.last_error = reason
            self._successes = 0
            together = started is not None and started < self._failed_at
            self._failed_at = time.monotonic()
            if together:
                return
            self._failures += 1
            if self.degraded or self._failures < self.fail_after:
                return
            self.degraded, self.since = True, time.monotonic()
        log.warning("serving.store_unavailable", reason=reason, failures=self._failures)

    def success(self) -> None:
        """A store call answered; ``recover_after`` of these in a row end degraded mode."""
        with self._lock:
            self.checked = True
            self._failures = 0
            if not self.degraded:
                return
            self._successes += 1
            if self._successes < self.recover_after:
                return
            outage_s = time.monotonic() - self.since
            self.degraded, self.since, self._successes = False, time.monotonic(), 0
        log.info("serving.store_recovered", after=self.last_error, degraded_s=round(outage_s, 3))

    def reason(self) -> str:
        """Why serving is degraded, with how long it has been."""
        return f"unavailable for {time.monotonic() - self.since:.1f} s; last error: {self.last_error}"
