"""Everything one serving process holds: settings, store and log handles, the served model, caches, metrics.

Created by the app's lifespan and reached by routes through ``deps.ServiceDep``. Nothing here connects at
import time. A store that cannot be opened at start-up does not stop the process: it stays not ready and the
snapshot watcher retries opening it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import Gauge
from starlette.exceptions import HTTPException

from lambdarec.eventlog import EventLog, open_ingest_log
from lambdarec.events import EventRules
from lambdarec.logs import get_logger
from lambdarec.model.rows import NO_STATE, UserRow, UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.kernel import load_in_background
from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import Settings, mask_url
from lambdarec.store import OnlineStore, StoreUnavailableError, open_store
from lambdarec.store.nonblocking import NonBlockingReads
from serving_layer.answer_cache import AnswerCache
from serving_layer.arms import Arms, Served
from serving_layer.auth import Keyring
from serving_layer.catalog_cache import CatalogCache
from serving_layer.fresh_reads import FreshReads
from serving_layer.kept_states import KeptStates
from serving_layer.model_cache import ModelCache
from serving_layer.prometheus import DecodedRows, ServingMetrics
from serving_layer.recommend import CORRUPT_ROW, STORE_UNAVAILABLE, RecommendQuery, read_states
from serving_layer.state_reads import read_states_nonblocking
from serving_layer.store_gate import StoreGate, StoreUnavailable
from serving_layer.store_health import StoreHealth
from serving_layer.trending_cache import TrendingCache
from serving_layer.turn_lists import TurnLists
from serving_layer.user_cache import RecentUsers

if TYPE_CHECKING:
    from lambdarec.store.cassandra_native import NativeFreshReads

log = get_logger(__name__)
NATIVE_RETRY_S = 10.0  # how often the C++ driver's reads are tried again while they do not connect


class Service:
    """The state of one serving process; see the module docstring."""

    def __init__(self, settings: Settings, *, store: OnlineStore | None = None, log_: EventLog | None = None):
        """``store``/``log_`` inject already open backends (tests, benchmarks); the service then leaves them open."""
        s = settings.serving
        self.settings = settings
        self.weights = MergeWeights.from_settings(s)
        self.rules = EventRules.from_settings(settings)
        self.keys = Keyring(s.ingest_key_hashes, s.admin_key_hashes)
        self.health = StoreHealth(s.store_fail_after, s.store_recover_after)
        self.gate = StoreGate(
            s.store_timeout_ms / 1000, s.store_retry_s, s.store_threads, self.health, s.store_probe_timeout_ms / 1000
        )
        self.trending = TrendingCache(
            settings.speed.trending_half_life_s, s.trending_refresh_s, settings.store.request_timeout_s
        )
        self.catalog = CatalogCache(s, settings.store.request_timeout_s)
        self.models = ModelCache(s.snapshot_poll_s, prepare=self._prepare)
        self.users = RecentUsers(s.user_cache_size)
        self.answers = AnswerCache(int(s.answer_cache_mb * 2**20), s.answer_cache_ttl_s)
        self.fresh_reads = FreshReads()  # the fresh-state reads of one loop turn, sent as one
        # users' fresh states kept until the store lists a change (serving.fresh_state_keep)
        self.kept = KeptStates(
            int(s.fresh_state_keep_mb * 2**20),
            s.fresh_state_keep_s,
            s.fresh_changes_poll_ms / 1000,
            s.fresh_changes_overlap_s,
            s.fresh_state_active_s,
        )
        self.turn_lists = TurnLists(self)  # the lists of one loop turn, read and ranked together (inline)
        scheme = urlsplit(settings.store.url).scheme
        self.inline_reads = s.store_reads == "inline" or (s.store_reads == "auto" and scheme == "sqlite")
        self.nonblocking_reads = False  # set once the store is open: whether it offers non-blocking reads
        self.metrics = ServingMetrics(lambda: (self.models.model, self.models.published_at))
        self.arms = Arms(settings, self.metrics.registry)
        self.models.on_swap.append(self._swapped)
        self.catalog.register(self.metrics.registry)
        self.answers.register(self.metrics.registry)
        self.fresh_reads.register(self.metrics.registry)
        self.kept.register(self.metrics.registry)
        self.turn_lists.register(self.metrics.registry)
        self.metrics.registry.register(DecodedRows(lambda: self._store.decoded_fresh if self._store else None))
        Gauge(
            "lambdarec_serving_cassandra_native_reads",
            "1 while users' fresh state is read from Cassandra through the C++ driver (acsylla), else 0.",
            registry=self.metrics.registry,
        ).set_function(lambda: float(self._native is not None))
        self._store, self._log = store, log_
        self._store_opened()
        self._owned = (store is None, log_ is None)
        self.store_error: str | None = None
        self._topic_ready = False
        self._topic_lock = threading.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._native: NativeFreshReads | None = None  # serving.cassandra_reads: fresh state through the C++ driver

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the backends and start the snapshot and trending watchers (the first load runs in the background).

        ``start`` after ``stop`` works: the served model stays in memory, the backends are opened again. The
        merge's compiled kernel loads in the background too (lists are ranked by numpy steps until it is ready).
        """
        load_in_background(then=gc.freeze)  # numba's objects live as long as the process too (see _swapped)
        self._check_native_reads()
        if self._stopped:
            self.gate.reopen()
            self._stopped = False
        if self._store is None:
            await self._open_store()
        if self._log is None:
            self._log = open_ingest_log(self.settings)  # Kafka connects on first use; impressions to their topic
        if self.keys.empty:
            log.warning("serving.no_api_keys", effect="POST /v1/events and /v1/snapshots refuse every request")
        self._tasks = [
            asyncio.create_task(self._watch_snapshots(), name="snapshot-watcher"),
            asyncio.create_task(
                self.trending.watch(self.store, self.gate, lambda: self.models.model), name="trending-watcher"
            ),
            asyncio.create_task(
                self.catalog.watch(self.store, self.gate, self._served_or_none), name="catalog-watcher"
            ),
            asyncio.create_task(self._probe_store(), name="store-probe"),
            asyncio.create_task(self._watch_changes(), name="fresh-changes-watcher"),
        ]
        await self._open_native_reads()  # after the tasks: a retry it starts is one of them, stopped with them

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._native is not None:
            await self._native.close()
            self._native = None
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
            self._store.keep_decoded_fresh(int(self.settings.serving.fresh_state_cache_mb * 2**20))
            self.store_error = None
            self._store_opened()
        except Exception as exc:  # keep running: not ready, and the watcher tries again
            self.store_error = f"cannot open the store: {type(exc).__name__}: {exc}"
            log.warning("serving.store_open_failed", reason=self.store_error)

    def _store_opened(self) -> None:
        """Reads go through the store's non-blocking API when it has one and ``serving.store_reads`` allows."""
        reads = self.settings.serving.store_reads
        self.nonblocking_reads = not self.inline_reads and reads == "auto" and isinstance(self._store, NonBlockingReads)

    def _check_native_reads(self) -> None:
        """``serving.cassandra_reads = native`` on a Cassandra store refuses to start where acsylla cannot be
        imported (before the store is even open: it may open later, in the snapshot watcher)."""
        if self.settings.serving.cassandra_reads != "native" or urlsplit(self.settings.store.url).scheme != "cassandra":
            return
        from lambdarec.store.cassandra_native import import_error

        if (problem := import_error()) is not None:
            raise RuntimeError(
                f"serving.cassandra_reads is native, but acsylla cannot be imported ({problem}): pip install "
                "acsylla, or set serving.cassandra_reads to auto or driver"
            )

    async def _open_native_reads(self, retry: bool = True) -> None:
        """Fresh state through the C++ driver where ``serving.cassandra_reads`` and the store allow it: a store
        read without blocking, on Cassandra. Without acsylla, ``auto`` reads through the driver (``native`` did
        not start); while it does not connect, the driver reads and it is tried again."""
        mode = self.settings.serving.cassandra_reads
        cassandra = urlsplit(self.settings.store.url).scheme == "cassandra"
        wanted = mode != "driver" and cassandra and self.nonblocking_reads
        if self._native is not None or self._store is None or not wanted:
            return
        try:
            from lambdarec.store.cassandra_native import NativeFreshReads  # the Cassandra drivers: only here

            self._native = await NativeFreshReads.open(self.settings.store, self._store)
        except ImportError as exc:
            log.info("serving.cassandra_reads", reads="driver", reason=f"acsylla cannot be imported: {exc}")
            return
        except (StoreUnavailableError, OSError) as exc:
            effect = f"fresh state read through cassandra-driver; tried again in {NATIVE_RETRY_S:g} s"
            log.warning("serving.cassandra_reads", reads="driver", reason=str(exc), effect=effect)
            if retry:
                self._tasks.append(asyncio.create_task(self._retry_native_reads(), name="native-reads-retry"))
            return
        log.info("serving.cassandra_reads", reads="native", driver="acsylla")

    async def _retry_native_reads(self) -> None:
        while self._native is None:
            await asyncio.sleep(NATIVE_RETRY_S)
            await self._open_native_reads(retry=False)

    async def _watch_snapshots(self) -> None:
        while self._store is None:
            await asyncio.sleep(self.settings.serving.snapshot_poll_s)
            await self._open_store()
            await self._open_native_reads()
        await self.models.watch(self.store, self.gate)

    def _keeps_states(self) -> bool:
        """Whether users' fresh states are kept until the store lists a change (``serving.fresh_state_keep``):
        on a store that lists changes and is read without blocking (Cassandra)."""
        store = self._store
        return (
            self.settings.serving.fresh_state_keep == "auto"
            and store is not None
            and store.lists_fresh_changes
            and self.nonblocking_reads
        )

    async def _watch_changes(self) -> None:
        """Poll the store's change list while fresh states are kept (:mod:`serving_layer.kept_states`)."""
        while self._store is None:
            await asyncio.sleep(self.settings.serving.fresh_changes_poll_ms / 1000)
        if not self._keeps_states():
            return
        store = self._store
        log.info("serving.fresh_state_keep", poll_ms=self.settings.serving.fresh_changes_poll_ms,
                 keep_s=self.settings.serving.fresh_state_keep_s)  # fmt: skip
        await self.kept.watch(
            lambda after_s: asyncio.wrap_future(store.read_fresh_changes_future(after_s)),
            self.settings.store.request_timeout_s,
        )

    async def _probe_store(self) -> None:
        """Read the current pointer every ``serving.store_retry_s`` so the store's health stays current (and
        degraded mode ends) without waiting for a request to try it."""
        s = self.settings.serving
        while True:
            with contextlib.suppress(StoreUnavailable):
                if self._store is not None:
                    await self.gate.call(self._store.ping, timeout_s=s.store_probe_timeout_ms / 1000, probe=True)
            await asyncio.sleep(s.store_retry_s)

    def store_problem(self) -> str | None:
        """Why the store cannot be used now (not open, or degraded), or None."""
        if self._store is None:
            return self.store_error or "the store is not open yet"
        if self.health.degraded:
            return self.health.reason()
        return None

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
            problem = self.store_problem()
            if problem is not None:
                raise HTTPException(
                    503,
                    f"no snapshot is loaded: the store ({mask_url(self.settings.store.url)}) is unavailable: "
                    f"{problem}. Serving loads the snapshot by itself once the store answers.",
                )
            raise HTTPException(
                503,
                "no snapshot is loaded yet: none has been published, or it is still loading; GET /readyz says which",
            )
        return self.trending.model_for(model)  # with the brand-new items (lambdarec.model.fresh_items)

    def _served_or_none(self) -> SnapshotModel | None:
        """The served snapshot with its brand-new items, as requests see it; None before one is loaded."""
        model = self.models.model
        return self.trending.model_for(model) if model is not None else None

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
        if self.inline_reads:
            return self.user_states_inline(model, ids)
        try:
            args = self._read_args(model, ids)
            if self.nonblocking_reads:
                states = await read_states_nonblocking(
                    args[0],
                    self.gate,
                    *args[1:],
                    fresh_reads=self.fresh_reads,
                    fresh_store=self._native,  # type: ignore[arg-type]
                    kept=self.kept if self._keeps_states() else None,
                )
            else:
                states = await self.gate.call(read_states, *args)
        except StoreUnavailable:
            return self._remembered(model, ids, 1), True
        return self._kept(model, states), False

    def user_states_inline(
        self, model: SnapshotModel, ids: list[str], lists: int = 1
    ) -> tuple[dict[str, UserState], bool]:
        """:meth:`user_states` read on this thread (``serving.store_reads`` inline: SQLite), for ``lists`` lists
        (counted as degraded when the store cannot be read)."""
        try:
            states = self.gate.call_inline(read_states, *self._read_args(model, ids))
        except StoreUnavailable:
            return self._remembered(model, ids, lists), True
        return self._kept(model, states), False

    def _read_args(self, model: SnapshotModel, ids: list[str]) -> tuple[object, ...]:
        shown = self.settings.speed.feedback.own_consumer  # impressions rows apart from the fresh rows
        return self.store(), model.version, ids, len(model.item_ids), self._known_rows(model.version, ids), shown

    def _remembered(self, model: SnapshotModel, ids: list[str], lists: int) -> dict[str, UserState]:
        """The users' states kept in memory (the store is unavailable); ``lists`` lists counted as degraded."""
        self.metrics.degraded.labels(STORE_UNAVAILABLE).inc(lists)
        return {u: self.users.get(model.version, u) or NO_STATE for u in ids}

    def _kept(self, model: SnapshotModel, states: dict[str, UserState]) -> dict[str, UserState]:
        """``states``, their corrupt rows counted and logged, the others remembered (:class:`RecentUsers`)."""
        for user_id, state in states.items():
            if state.corrupt is not None:
                self.metrics.degraded.labels(CORRUPT_ROW).inc()
                self.metrics.corrupt_rows.labels("user").inc()
                log.warning("serving.corrupt_row", user_id=user_id, snapshot=model.version, reason=state.corrupt)
            elif state is not NO_STATE:
                self.users.put(model.version, user_id, state)
        return states

    def _known_rows(self, version: str, user_ids: list[str]) -> dict[str, UserRow]:
        """The users' batch rows of ``version`` read before (kept in :class:`RecentUsers`): a snapshot's rows
        never change, so only the fresh state is read again."""
        known = {}
        for user_id in user_ids:
            state = self.users.get(version, user_id)
            if state is not None and state.batch_row is not None and state.corrupt is None:
                known[user_id] = state.batch_row
        return known

    def _swapped(self, model: SnapshotModel) -> None:
        self.metrics.swaps.inc()
        # What is loaded by now lives as long as the process (modules, app, the snapshot's id maps): a full
        # collection need not walk it on every request burst, which cost tens of ms of p99 (refcounting still
        # frees an old snapshot's arrays). The merge kernel's load freezes again when it ends: numba's types and
        # functions, some 100k objects, made each full collection of a loaded server 60-70 ms
        gc.freeze()
        if model.corrupt_items:
            self.metrics.corrupt_rows.labels("item").inc(len(model.corrupt_items))
            log.warning("serving.corrupt_item_rows", snapshot=model.version, items=list(model.corrupt_items[:20]),
                        count=len(model.corrupt_items), effect="served without neighbours")  # fmt: skip

    def _prepare(self, model: SnapshotModel) -> None:
        """Score trending and build the catalog's view for ``model`` before it is swapped in."""
        self.trending.prepare(model)
        self.catalog.prepare(model, self.store())

    def forget_cached(self, user_id: str) -> None:
        """An erased user's states kept for degraded serving, and their kept answers, are dropped at once."""
        self.users.forget(user_id)
        self.answers.forget(user_id)
        self.kept.forget(user_id)

    async def readiness(self) -> list[str]:
        """Why this process is not ready, each reason naming its cause; empty when a snapshot is loaded and the
        store answers (the reason a snapshot could not be loaded, e.g. a checksum failure, is named as such)."""
        reasons = []
        if self.models.model is None:
            reasons.append(self.models.load_error or "no snapshot loaded yet (none published, or still loading)")
        if not self.health.checked and self._store is not None:  # before the first probe: ask now
            timeout_s = self.settings.serving.store_probe_timeout_ms / 1000
            with contextlib.suppress(StoreUnavailable):
                await self.gate.call(self._store.ping, timeout_s=timeout_s, probe=True)
        problem = self.store_problem()
        if problem is not None:
            reasons.append(f"store unavailable: {problem}")
        if not self.catalog.loaded:
            reasons.append("the item catalog is not read yet (serving.catalog_poll_s)")
        return reasons

    async def served_arm(self, query: RecommendQuery, model: SnapshotModel | None = None) -> Served:
        """How ``query`` is ranked: its experiment arm (if any), snapshot, weights and trending. ``model``: the
        current snapshot already taken for this request (default: take it now; 503 until one is loaded)."""
        current = model if model is not None else self.served_model()
        return await self.arms.serve(
            query, current, self.store, self.weights, self.trending.scores_for, lambda: self.trending.rows
        )
