"""One poll's outcome on its way to the store, written on a thread of its own while the consumer polls again.

The consumer computes batch N+1 while batch N's state is being written, then waits for N's write, commits N's
positions, and hands N+1 to the writer: the store's latency overlaps the next poll and its computation, and the
commit still follows the write (a crash redelivers whatever was not committed; the positions inside each state
make the replay a no-op). Batch N+1 reads the state that N is writing from :meth:`StateWriter.pending_users` and
:meth:`StateWriter.pending_trending`, never a stale row from the store.

Example
-------
>>> writer = StateWriter(store)                 # doctest: +SKIP
>>> writer.submit(batch)                         # the consumer polls and computes the next batch meanwhile
>>> done, written_at = writer.wait()             # then commits ``done``'s positions
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from lambdarec.eventlog.base import Record, next_positions
from lambdarec.events import Event
from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser, TrendingItem
from lambdarec.store import OnlineStore
from speed_layer.state import Position

log = get_logger(__name__)


@dataclass
class Batch:
    """A poll's records and what they do to state: computed, not yet written nor committed."""

    records: list[Record]
    good: list[tuple[Event, Position]] = field(default_factory=list)
    bad: list[tuple[Record, str]] = field(default_factory=list)  # undecodable records with the reason
    poison: dict[Position, str] = field(default_factory=dict)  # valid events whose application raised
    repeats: set[Position] = field(default_factory=set)  # event ids claimed before by another position
    users: list[FreshUser] = field(default_factory=list)
    items: list[TrendingItem] = field(default_factory=list)
    polled: list[Record] | None = None  # every record polled, those left to another consumer too; None: records
    # when (epoch s) the poll returned, the state was computed, written and the positions committed: where the
    # latency of a batch's events went (``lambdarec_speed_stage_seconds``, the ``speed`` benchmark)
    polled_at: float = 0.0
    computed_at: float = 0.0
    written_at: float = 0.0
    committed_at: float = 0.0

    def __post_init__(self) -> None:
        if self.polled is None:
            self.polled = self.records

    @property
    def positions(self) -> dict[int, int]:
        """Per partition, the next position to commit once the state is written (past every record polled)."""
        return next_positions(self.polled or self.records)

    @property
    def applied(self) -> list[tuple[Event, Position]]:
        return [(event, pos) for event, pos in self.good if pos not in self.poison]

    @property
    def letters(self) -> list[tuple[Record, str]]:
        """Records for the dead-letter log: bad records and poison records, with the reason."""
        if not self.poison:
            return list(self.bad)
        by_pos = {(r.partition, r.offset): r for r in self.records}
        return [*self.bad, *((by_pos[pos], reason) for pos, reason in self.poison.items())]


class StateWriter:
    """Writes one batch's fresh state and trending shards at a time, on its own thread."""

    def __init__(self, store: OnlineStore, *, threaded: bool = True) -> None:
        """``threaded=False`` writes in ``submit`` itself: for an embedded store, whose writes are CPU in this
        process, a writer thread only contends with the consumer for the GIL (and delays the write)."""
        self.store = store
        # two threads: a batch's trending shards are written beside its user states, not after them (either may
        # land without the other when one fails: the batch is delivered again, and the positions inside each state
        # and shard make that replay a no-op for what did land)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="speed-writer") if threaded else None
        self._batch: Batch | None = None
        self._futures: list[Future[float]] = []
        self._users: dict[str, FreshUser] = {}
        self._items: dict[str, TrendingItem] = {}

    @property
    def busy(self) -> bool:
        """Whether a batch was handed over and not yet waited for."""
        return self._batch is not None

    def pending_users(self) -> dict[str, FreshUser]:
        """The user states being written (the newest state of those users)."""
        return self._users

    def pending_trending(self) -> dict[str, TrendingItem]:
        """The trending shards being written, by store key."""
        return self._items

    def submit(self, batch: Batch) -> None:
        """Start writing ``batch``'s state; one batch at a time (``wait`` for the previous one first)."""
        if self._batch is not None:
            raise RuntimeError("the previous batch's state is still being written: wait() for it first")
        self._batch = batch
        self._users = {u.user_id: u for u in batch.users}
        self._items = {t.key: t for t in batch.items}
        jobs = self._jobs(batch)
        if self._pool is not None:
            self._futures = [self._pool.submit(self._write, write, rows) for write, rows in jobs]
            return
        future: Future[float] = Future()
        self._futures = [future]
        try:
            future.set_result(max(self._write(write, rows) for write, rows in jobs))
        except Exception as exc:  # raised by wait(), as a threaded write's error would be
            future.set_exception(exc)

    def _jobs(self, batch: Batch) -> list[tuple[Callable[[list[Any]], int], list[Any]]]:
        """The writes of ``batch``: each store call with its rows (run side by side on a threaded writer)."""
        return [(self.store.write_fresh_users, batch.users), (self.store.write_trending, batch.items)]

    @staticmethod
    def _write(write: Callable[[list[Any]], int], rows: list[Any]) -> float:
        write(rows)
        return time.time()

    def wait(self) -> tuple[Batch, float] | None:
        """The batch handed over and when its state was written (epoch s); None if there was none. Re-raises
        the write's error, and the batch is dropped either way (a failed write is redelivered from the log)."""
        batch, futures = self._batch, self._futures
        if batch is None or not futures:
            return None
        try:
            wait(futures)  # both writes over, whatever either did, before the batch is
            return batch, max(f.result() for f in futures)
        finally:
            self._batch, self._futures, self._users, self._items = None, [], {}, {}

    def abandon(self) -> None:
        """Wait for a write in flight and forget its batch (nothing of it will be committed)."""
        try:
            self.wait()
        except Exception as exc:  # the batch is redelivered from the log: only say why it was dropped
            log.info("speed.write_abandoned", reason=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop the writer thread (after the write in flight, if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
