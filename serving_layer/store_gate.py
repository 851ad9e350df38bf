"""Store calls on the request path: in a small thread pool, under ``serving.store_timeout_ms``, with a breaker.

A call that fails with a store error (``lambdarec.store.BACKEND_FAILURES``) or times out marks the store
unavailable; for ``serving.store_retry_s`` afterwards requests do not wait on it at all (they are served degraded
from memory), then the next request tries again. Any other exception is a bug: it passes through unchanged (the
app answers 500, logs the traceback and counts it) and leaves the breaker as it was. Background
tasks (snapshot watcher, readiness) probe it with :meth:`StoreGate.call` too, so one success closes the breaker.

Example
-------
>>> gate = StoreGate(timeout_s=0.1, retry_s=1.0, threads=8)          # doctest: +SKIP
>>> row = await gate.call(store.read_user, version, "u1")          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lambdarec.logs import get_logger
from lambdarec.store import BACKEND_FAILURES

log = get_logger(__name__)
T = TypeVar("T")


class StoreUnavailable(RuntimeError):
    """The store did not answer in time, failed, or is being skipped after a recent failure."""


class StoreGate:
    """Runs blocking store calls with a timeout and remembers the store's health."""

    def __init__(self, timeout_s: float, retry_s: float, threads: int):
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")
        self._failed_at: float | None = None
        self.last_error: str | None = None

    @property
    def available(self) -> bool:
        """False from a failed call until the next successful one."""
        return self._failed_at is None

    def skipping(self) -> bool:
        """Whether requests should skip the store now (a call failed less than ``retry_s`` ago)."""
        return self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s

    async def call(self, fn: Callable[..., T], *args: object, timeout_s: float | None = None, probe: bool = False) -> T:
        """``fn(*args)`` in the pool; :class:`StoreUnavailable` on a store error or after the timeout.

        Parameters
        ----------
        fn, args
            The blocking store call.
        timeout_s
            Overrides ``serving.store_timeout_ms`` (background reads of whole tables take longer).
        probe
            Call even while the breaker is open (health checks).
        """
        if not probe and self.skipping():
            raise StoreUnavailable(f"store skipped for {self.retry_s:g} s after: {self.last_error}")
        loop = asyncio.get_running_loop()
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                result = await loop.run_in_executor(self._pool, fn, *args)
        except TimeoutError:
            self._fail(f"{_name(fn)} took longer than {limit * 1000:g} ms (serving.store_timeout_ms)")
            raise StoreUnavailable(self.last_error) from None
        except BACKEND_FAILURES as exc:  # the store failed: the request is served degraded instead of failing
            self._fail(f"{_name(fn)} failed: {type(exc).__name__}: {exc}")
            raise StoreUnavailable(self.last_error) from exc
        if self._failed_at is not None:
            log.info("serving.store_recovered", after=self.last_error)
            self._failed_at = None
        return result

    def call_inline(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the calling thread (fast local reads); store failures are recorded as in :meth:`call`."""
        if self.skipping():
            raise StoreUnavailable(f"store skipped for {self.retry_s:g} s after: {self.last_error}")
        try:
            result = fn(*args)
        except BACKEND_FAILURES as exc:  # the store failed: the request is served degraded instead of failing
            self._fail(f"{_name(fn)} failed: {type(exc).__name__}: {exc}")
            raise StoreUnavailable(self.last_error) from exc
        if self._failed_at is not None:
            log.info("serving.store_recovered", after=self.last_error)
            self._failed_at = None
        return result

    def _fail(self, reason: str) -> None:
        if self._failed_at is None:
            log.warning("serving.store_unavailable", reason=reason)
        self._failed_at = time.monotonic()
        self.last_error = reason

    def close(self) -> None:
        """Stop the pool without waiting for calls stuck in a dead backend; :meth:`reopen` starts a new one."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reopen(self) -> None:
        """A fresh pool after :meth:`close` (the app's lifespan may run again in one process, as in tests)."""
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="store")


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
