"""The fresh-state reads of the requests an event loop handles in one turn, sent to the store as one read.

Under concurrent clients several requests reach their store read in the same turn of the event loop. Each used to
send its own query; on Cassandra a query costs the driver and the coordinator far more than the row it reads, so
serving from Cassandra spent most of a request there. :class:`FreshReads` collects the user ids asked for during
one turn and sends them together when the turn ends (``loop.call_soon``): one non-blocking read, which the store
sends as a few ``IN`` queries. Each request still gets its own future, with only its own users' states, and on its
own timeout: a request that gives up cancels only its future, never its neighbours' read. A request alone in its
turn waits for nothing more than the rest of that turn.

Where the reads are the event loop's own (``serving.cassandra_reads``: the C++ driver, whose answers resolve on the
loop), each request's future is a future of that loop, settled there when the turn's read is back; with
cassandra-driver it is a thread-safe future that the driver's I/O thread settles.

A corrupt row costs only the requests that asked for it (each gets a ``CorruptRowError`` naming its own bad rows
and carrying its good ones); a failed read fails every request of the turn, as it would have failed each of them.

Example
-------
>>> reads = FreshReads()
>>> states = await asyncio.wrap_future(reads.read(store, ["u1"]))          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Protocol, Union

from prometheus_client import CollectorRegistry, Counter

from lambdarec.model.rows import FreshUser
from lambdarec.store import CorruptRowError

Answer = Union["Future[dict[str, FreshUser]]", "asyncio.Future[dict[str, FreshUser]]"]
Waiter = tuple[list[str], Answer]


class FreshReader(Protocol):
    """What reads fresh state without blocking: a store (:class:`NonBlockingReads`, thread-safe futures) or
    :class:`~lambdarec.store.cassandra_native.NativeFreshReads` (the event loop's futures)."""

    def read_fresh_users_future(self, user_ids: Sequence[str]) -> Answer: ...


class FreshReads:
    """Coalesces one event loop's fresh-state reads per turn (one instance per loop, i.e. per worker)."""

    def __init__(self) -> None:
        self._store: FreshReader | None = None
        self._waiting: list[Waiter] = []
        self.reads = 0  # store reads sent, and the requests they served
        self.requests = 0
        self._counters: tuple[Counter, Counter] | None = None

    def register(self, registry: CollectorRegistry) -> None:
        """``lambdarec_serving_fresh_reads_total`` and ``lambdarec_serving_fresh_read_requests_total``: their
        ratio is how many requests one store read served."""
        self._counters = (
            Counter("lambdarec_serving_fresh_reads_total",
                    "Fresh-state reads sent to a store with non-blocking reads (one per event-loop turn).",
                    registry=registry),
            Counter("lambdarec_serving_fresh_read_requests_total",
                    "Requests whose fresh state those reads fetched (requests per read: coalescing).",
                    registry=registry),
        )  # fmt: skip

    def read(self, store: FreshReader, user_ids: Sequence[str]) -> Answer:
        """A future of ``store.read_fresh_users_future(user_ids)``'s answer, read together with the other reads
        of this turn of the running event loop: a future of that loop where the reader's are
        (``loop_native``: :class:`~lambdarec.store.cassandra_native.NativeFreshReads`), else a thread-safe one
        (the driver's I/O thread settles it)."""
        if self._waiting and store is not self._store:  # the store was replaced mid-turn: send the old one's now
            self._flush()
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._store = store
        mine: Answer = loop.create_future() if getattr(store, "loop_native", False) else Future()
        self._waiting.append((list(user_ids), mine))
        return mine

    def _flush(self) -> None:
        waiting, store = self._waiting, self._store
        self._waiting, self._store = [], None
        if not waiting or store is None:
            return
        self.reads += 1
        self.requests += len(waiting)
        if self._counters is not None:
            self._counters[0].inc()
            self._counters[1].inc(len(waiting))
        ids = list(dict.fromkeys(uid for asked, _ in waiting for uid in asked))
        try:
            together = store.read_fresh_users_future(ids)
        except Exception as exc:
            for _, mine in waiting:
                _settle(mine, exc)
            return
        together.add_done_callback(lambda done: _share(done, waiting))


def _share(done: Answer, waiting: list[Waiter]) -> None:
    """Each waiter's part of the answer (runs on the thread that settled ``done``: the event loop's for a
    loop-native reader, whose waiters are that loop's futures)."""
    if done.cancelled():  # the event loop is closing (the requests cancel only their own futures)
        for _, mine in waiting:
            mine.cancel()
        return
    exc = done.exception()
    corrupt = set(exc.keys) if isinstance(exc, CorruptRowError) else set()
    for asked, mine in waiting:
        if exc is None:
            states = done.result()
            _settle(mine, {u: states[u] for u in asked if u in states})
        elif isinstance(exc, CorruptRowError):  # only the requests that asked for a corrupt row see it
            bad = [u for u in asked if u in corrupt]
            good = {u: exc.rows[u] for u in asked if u in exc.rows}
            # the store's message (which says why each row does not decode) when it names only this request's rows
            message = str(exc) if set(bad) == corrupt else f"{len(bad)} corrupt fresh state row(s): users {bad}"
            _settle(mine, CorruptRowError(message, keys=bad, rows=good) if bad else good)
        else:
            _settle(mine, exc)


def _settle(mine: Answer, outcome: object) -> None:
    # InvalidStateError: this request gave up (its timeout cancelled its future)
    with contextlib.suppress(InvalidStateError, asyncio.InvalidStateError):
        if isinstance(outcome, BaseException):
            mine.set_exception(outcome)
        else:
            mine.set_result(outcome)  # type: ignore[arg-type]
