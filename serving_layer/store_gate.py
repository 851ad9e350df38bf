"""Store calls on the request path: in a small thread pool, under ``serving.store_timeout_ms``, with a breaker.

Every outcome feeds :class:`StoreHealth`: ``serving.store_fail_after`` failed or timed-out calls in a row put the
store in degraded mode, where requests do not wait on it at all (they are served degraded from memory); only the
background probes (health probe, snapshot watcher, trending) still call it (``probe=True``), and
``serving.store_recover_after`` successes in a row end degraded mode. Only a store error
(``lambdarec.store.BACKEND_FAILURES``) or a timeout counts as a failure: any other exception is a bug; it passes
through unchanged (the app answers 500, logs the traceback and counts it) and leaves the store's health as it was.

Example
-------
>>> gate = StoreGate(timeout_s=0.1, retry_s=1.0, threads=8)          # doctest: +SKIP
>>> row = await gate.call(store.read_user, version, "u1")          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from lambdarec.logs import get_logger
from lambdarec.store import BACKEND_FAILURES
from serving_layer.store_health import StoreHealth

log = get_logger(__name__)
T = TypeVar("T")


class StoreUnavailable(RuntimeError):
    """The store did not answer in time, failed, or is being skipped after a recent failure."""


class StoreGate:
    """Runs blocking store calls with a timeout and remembers the store's health."""

    def __init__(
        self,
        timeout_s: float,
        retry_s: float,
        threads: int,
        health: StoreHealth | None = None,
        probe_timeout_s: float | None = None,
    ):
        """``probe_timeout_s``: the default timeout of background probes (``probe=True``); a store warming up
        after a restart answers them more slowly than requests may wait, and must still count as recovering."""
        self.timeout_s = timeout_s
        self.probe_timeout_s = timeout_s if probe_timeout_s is None else probe_timeout_s
        self.retry_s = retry_s
        self.threads = threads
        self.health = health or StoreHealth(fail_after=1, recover_after=1)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")

    @property
    def last_error(self) -> str | None:
        return self.health.last_error

    def skipping(self) -> bool:
        """Whether requests should skip the store now (degraded mode: only probes call it)."""
        return self.health.degraded

    def refuse_while_skipping(self) -> None:
        """:class:`StoreUnavailable` while requests skip the store (before a request sends its reads)."""
        if self.skipping():
            raise self._skipped()

    def _skipped(self) -> StoreUnavailable:
        return StoreUnavailable(f"store skipped while degraded ({self.health.reason()})")

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
            raise self._skipped()
        limit = timeout_s if timeout_s is not None else self.probe_timeout_s if probe else self.timeout_s
        budget = "its timeout" if timeout_s is not None else "serving.store_probe_timeout_ms" if probe else None
        loop = asyncio.get_running_loop()
        run = lambda: loop.run_in_executor(self._pool, fn, *args)  # noqa: E731
        return await self._within(run, _name(fn), limit, budget, request=not probe)

    async def wait_all(
        self, futures: Sequence[Future[Any]], name: str, keep: tuple[type[BaseException], ...] = ()
    ) -> list[Any]:
        """The outcomes of non-blocking store reads already sent (each result, or an exception of a ``keep``
        type), once all have answered, within ``serving.store_timeout_ms``.

        An answer that is in when the time is up is used, even if this event loop, busy with other requests, was
        late to see it: only a store that has not answered makes the request degraded. :class:`StoreUnavailable`
        after the timeout (the reads are cancelled) or on a store error, as :meth:`call`.
        """
        started = time.monotonic()
        if not all(f.done() for f in futures):
            await asyncio.wait([asyncio.wrap_future(f) for f in futures], timeout=self.timeout_s)
        if not all(f.done() for f in futures):
            for future in futures:
                future.cancel()
            self._fail(f"{name} took longer than {self.timeout_s * 1000:g} ms (serving.store_timeout_ms)", started)
            raise StoreUnavailable(self.last_error)
        outcomes = [f.exception() or f.result() for f in futures]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, keep):
                if not isinstance(outcome, BACKEND_FAILURES):
                    raise outcome  # a bug, not an outage: the app answers 500 and logs it
                self._fail(f"{name} failed: {type(outcome).__name__}: {outcome}", started)
                raise StoreUnavailable(self.last_error) from outcome
        self.health.success()
        return outcomes

    async def _within(
        self, start: Callable[[], Awaitable[T]], name: str, limit: float, budget: str | None, request: bool
    ) -> T:
        # a request says when it was sent (requests failing together are one failure); a probe counts alone
        started = time.monotonic() if request else None
        try:
            async with asyncio.timeout(limit):
                result = await start()
        except TimeoutError:
            budget = budget or "serving.store_timeout_ms"
            self._fail(f"{name} took longer than {limit * 1000:g} ms ({budget})", started)
            raise StoreUnavailable(self.last_error) from None
        except BACKEND_FAILURES as exc:  # the store failed: the request is served degraded instead of failing
            self._fail(f"{name} failed: {type(exc).__name__}: {exc}", started)
            raise StoreUnavailable(self.last_error) from exc
        self.health.success()
        return result

    def call_inline(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the calling thread (fast local reads); store failures are recorded as in :meth:`call`."""
        if self.skipping():
            raise self._skipped()
        started = time.monotonic()
        try:
            result = fn(*args)
        except BACKEND_FAILURES as exc:  # the store failed: the request is served degraded instead of failing
            self._fail(f"{_name(fn)} failed: {type(exc).__name__}: {exc}", started)
            raise StoreUnavailable(self.last_error) from exc
        self.health.success()
        return result

    def _fail(self, reason: str, started: float | None) -> None:
        self.health.failure(reason, started)

    def close(self) -> None:
        """Stop the pool without waiting for calls stuck in a dead backend; :meth:`reopen` starts a new one."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reopen(self) -> None:
        """A fresh pool after :meth:`close` (the app's lifespan may run again in one process, as in tests)."""
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="store")


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
