"""The served snapshot's model, loaded once into memory and hot-swapped when the current pointer moves.

A background task asks the store for the current version every ``serving.snapshot_poll_s``; when it moved, the
new model is loaded in a worker thread (requests keep being served by the old one meanwhile) and swapped in
with one reference assignment. A request takes the model once, at its start, so it ranks with one snapshot
throughout. ``switch_to`` does the same at once (after ``POST /v1/snapshots/{version}/activate``).

Example
-------
>>> cache = ModelCache(poll_s=5.0)                                  # doctest: +SKIP
>>> await cache.switch_to(store, "20240201T000000000Z-a1b2c3")
>>> cache.model.version
'20240201T000000000Z-a1b2c3'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from lambdarec.logs import get_logger
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.store import OnlineStore
from serving_layer.store_gate import StoreGate, StoreUnavailable

log = get_logger(__name__)


def load_model(store: OnlineStore, version: str) -> SnapshotModel:
    """Load ``version`` and compute every cached view the request path uses, so no request pays for them."""
    model = SnapshotModel.load(store, version)
    for view in ("item_index", "unit_factors", "popular_order", "recent_order"):
        getattr(model, view)
    return model


class ModelCache:
    """Holds the served :class:`SnapshotModel` and swaps it when the store's current pointer moves."""

    def __init__(self, poll_s: float, prepare: Callable[[SnapshotModel], None] | None = None):
        """``prepare(model)`` runs in the loading thread before the swap (e.g. scoring trending for it)."""
        self.poll_s = poll_s
        self.model: SnapshotModel | None = None
        self.published_at: float | None = None  # epoch seconds
        self.swaps = 0
        self.load_error: str | None = None  # why the store's current version could not be loaded, until it can
        self._prepare = prepare
        self._lock = asyncio.Lock()
        self.on_swap: list[Callable[[SnapshotModel], None]] = []

    async def switch_to(
        self, store: OnlineStore, version: str, commit: Callable[[SnapshotModel], None] | None = None
    ) -> SnapshotModel:
        """Load ``version`` (unless it is already served) and swap it in; returns the served model.

        ``commit(model)`` runs in a worker thread after the load succeeded and before the swap (an activation
        checks the model and moves the store's pointer there): a version that does not load, or that ``commit``
        refuses by raising, is never swapped in.
        """
        async with self._lock:
            if self.model is not None and self.model.version == version:
                if commit is not None:
                    await asyncio.to_thread(commit, self.model)
                return self.model
            started = time.perf_counter()
            model, published_at = await asyncio.to_thread(self._load, store, version)
            if commit is not None:
                await asyncio.to_thread(commit, model)
            previous = self.model.version if self.model is not None else None
            self.model, self.published_at = model, published_at  # the swap: one reference, read once per request
            self.swaps += 1
            self.load_error = None
            for listener in self.on_swap:
                listener(model)
            log.info(
                "serving.snapshot_swapped",
                version=version,
                previous=previous,
                items=len(model.item_ids),
                corrupt_items=len(model.corrupt_items),
                load_s=round(time.perf_counter() - started, 3),
            )
            return model

    def _load(self, store: OnlineStore, version: str) -> tuple[SnapshotModel, float | None]:
        model = load_model(store, version)
        info = store.get_snapshot(version)
        if self._prepare is not None:
            self._prepare(model)
        return model, info.published_at.timestamp() if info.published_at else None

    async def refresh(self, store: OnlineStore, gate: StoreGate) -> bool:
        """Swap in the store's current version if it differs from the served one; whether it swapped."""
        swaps = self.swaps
        version = await gate.call(store.current_version, 0.0, probe=True)
        if swaps != self.swaps:  # an activation swapped meanwhile: this answer may predate it
            return False
        if version is None or (self.model is not None and version == self.model.version):
            return False
        await self.switch_to(store, version)
        return True

    async def watch(self, store_of: Callable[[], OnlineStore], gate: StoreGate) -> None:
        """Refresh every ``poll_s`` until cancelled; failures are logged and retried at the next tick."""
        while True:
            try:
                await self.refresh(store_of(), gate)
            except StoreUnavailable:
                pass  # the gate logged it; the served model stays
            except Exception as exc:  # a snapshot that fails to load must not stop the watcher
                error = f"the current snapshot cannot be loaded: {type(exc).__name__}: {exc}"
                if error != self.load_error:  # once per distinct failure, not once per poll
                    log.exception("serving.snapshot_load_failed", reason=error)
                self.load_error = error
            await asyncio.sleep(self.poll_s)
