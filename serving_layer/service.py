"""Everything one serving process holds: settings, store and log handles, the served model, caches, metrics.

Created by the app's lifespan and reached by routes through ``deps.ServiceDep``. Nothing here connects at
import time. A store that cannot be opened at start-up does not stop the process: it stays not ready and the
snapshot watcher retries opening it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from lambdarec.events import EventRules
from lambdarec.log import EventLog, open_log
from lambdarec.logs import get_logger
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, open_store
from serving_layer.auth import Keyring
from serving_layer.metrics import ServingMetrics
from serving_layer.model_cache import ModelCache
from serving_layer.recommend import read_states
from serving_layer.store_gate import StoreGate, StoreUnavailable
from serving_layer.trending_cache import TrendingCache
from serving_layer.user_cache import NO_STATE, RecentUsers, UserState

log = get_logger(__name__)


class Service:
    """The state of one serving process; see the module docstring."""

    def __init__(self, settings: Settings, *, store: OnlineStore | None = None, log_: EventLog | None = None):
        """``store``/``log_`` inject already open backends (tests, benchmarks); the service then leaves them open."""
        s = settings.serving
        self.settings = settings
        self.weights = MergeWeights.from_settings(s)
        self.rules = EventRules.from_settings(settings)
        self.keys = Keyring(s.ingest_key_hashes, s.admin_key_hashes)
        self.gate = StoreGate(s.store_timeout_ms / 1000, s.store_retry_s, s.store_threads)
        self.trending = TrendingCache(
            settings.speed.trending_half_life_s, s.trending_refresh_s, settings.store.request_timeout_s
        )
        self.models = ModelCache(s.snapshot_poll_s, prepare=self.trending.prepare)
        self.users = RecentUsers(s.user_cache_size)
        scheme = urlsplit(settings.store.url).scheme
        self.inline_reads = s.store_reads == "inline" or (s.store_reads == "auto" and scheme == "sqlite")
        self.metrics = ServingMetrics(lambda: (self.models.model, self.models.published_at))
        self.models.on_swap.append(lambda _model: self.metrics.swaps.inc())
        self._store, self._log = store, log_
        self._owned = (store is None, log_ is None)
        self.store_error: str | None = None
        self._topic_ready = False
        self._topic_lock = threading.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backends and start the snapshot and trending watchers (the first load runs in the background).

        ``start`` after ``stop`` works: the served model stays in memory, the backends are opened again.
        """
        if self._stopped:
            self.gate.reopen()
            self._stopped = False
        if self._store is None:
            await self._open_store()
        if self._log is None:
            self._log = open_log(self.settings)  # Kafka connects on first use
        if self.keys.empty:
            log.warning("serving.no_api_keys", effect="POST /v1/events and /v1/snapshots refuse every request")
        self._tasks = [
            asyncio.create_task(self._watch_snapshots(), name="snapshot-watcher"),
            asyncio.create_task(
                self.trending.watch(self.store, self.gate, lambda: self.models.model), name="trending-watcher"
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self.gate.close()
        self._stopped = True
        own_store, own_log = self._owned
        if own_store and self._store is not None:
            self._store.close()
            self._store = None
        if own_log and self._log is not None:
            self._log.close()
            self._log, self._topic_ready = None, False

    async def _open_store(self) -> None:
        try:
            self._store = await asyncio.to_thread(open_store, self.settings)
            self.store_error = None
        except Exception as exc:  # keep running: not ready, and the watcher tries again
            self.store_error = f"cannot open the store: {type(exc).__name__}: {exc}"
            log.warning("serving.store_open_failed", reason=self.store_error)

    async def _watch_snapshots(self) -> None:
        while self._store is None:
            await asyncio.sleep(self.settings.serving.snapshot_poll_s)
            await self._open_store()
        await self.models.watch(self.store, self.gate)

    # ---- what routes use -----------------------------------------------------------------------------------

    def store(self) -> OnlineStore:
        """The open store; :class:`StoreUnavailable` while it could not be opened."""
        if self._store is None:
            raise StoreUnavailable(self.store_error or "the store is not open yet")
        return self._store

    def served_model(self) -> SnapshotModel:
        """The served snapshot (take it once per request); a 503 ``HTTPException`` until one is loaded."""
        model = self.models.model
        if model is None:
            raise HTTPException(
                503,
                "no snapshot is loaded yet: none has been published, or it is still loading; GET /readyz says which",
            )
        return model

    def event_log(self) -> EventLog:
        """The event log, its topic ensured once (blocking: call from a worker thread)."""
        if self._log is None:
            raise RuntimeError("the service has not started")
        if not self._topic_ready:
            with self._topic_lock:
                if not self._topic_ready:
                    self._log.ensure_topic()
                    self._topic_ready = True
        return self._log

    async def user_states(self, model: SnapshotModel, user_ids: Iterable[str]) -> tuple[dict[str, UserState], bool]:
        """The users' states for ``model``, and whether they came from memory because the store is unavailable."""
        ids = list(user_ids)
        try:
            if self.inline_reads:
                states = self.gate.call_inline(read_states, self.store(), model.version, ids)
            else:
                states = await self.gate.call(read_states, self.store(), model.version, ids)
        except StoreUnavailable:
            self.metrics.degraded.labels("store-unavailable").inc()
            return {u: self.users.get(model.version, u) or NO_STATE for u in ids}, True
        for user_id, state in states.items():
            if state is not NO_STATE:
                self.users.put(model.version, user_id, state)
        return states, False

    def forget_cached(self, user_id: str) -> None:
        """An erased user's states kept for degraded serving are dropped at once."""
        self.users.forget(user_id)

    async def readiness(self) -> list[str]:
        """Why this process is not ready; empty when a snapshot is loaded and the store answers."""
        reasons = []
        if self.models.model is None:
            reasons.append("no snapshot loaded yet (none published, or still loading)")
        try:
            await self.gate.call(self.store().ping, probe=True)
        except StoreUnavailable as exc:
            reasons.append(f"store unavailable: {exc}")
        return reasons
