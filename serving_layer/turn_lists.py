"""The users' lists asked for in one turn of the event loop, read and ranked together, where the store is read
inline (SQLite).

Under concurrent clients an event loop parses several requests in one turn. Each used to read its user's state,
rank and encode its list alone, between its neighbours' HTTP parsing, routing and sending; at a few hundred
microseconds a list, the CPU's caches held the HTTP server's code and data when each ranking began, not the
merge kernel's, the store's or the snapshot's arrays. :class:`TurnLists` gathers the requests of one turn and, when
the turn ends (``loop.call_soon``), reads their users' states in one store read and answers them one after another
(:func:`serving_layer.user_list.answer_now`: the answer cache, the merge, the encoding, the metrics); each request
then sends its own answer. Measured with the ``serve`` benchmark's requests, no URL sent twice, two servers side
by side on one core of a 2-core EPYC: 2.0-3.0k -> 2.6-3.7k lists per second (+25-69%).

Each request gets its own future: an error in one list (a 500) is that request's alone; a store that fails
serves the batch's lists degraded from memory and counts each, as it would have served each of them; a request
that went away is skipped. A batch holds at most ``MAX_LISTS`` lists (more start another batch in the same
turn), so a burst of clients does not hold every answer until the last of them is ranked.

Requests that write an impression, and stores read off the event loop, keep their own path. On Cassandra,
where :mod:`serving_layer.fresh_reads` already coalesces a turn's reads, batching the rankings behind one
awaited read too gave 24-27% more lists per second but a median latency of 16 ms instead of 3.4 at half the
maximum rate (``serve --store cassandra``, 2-core EPYC).

Example
-------
>>> body, degraded_reason, arm = await service.turn_lists.answer(served)      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from serving_layer.arms import Served
    from serving_layer.service import Service
    from serving_layer.user_list import Answer

MAX_LISTS = 16  # lists in one batch (16 clients: one batch); a larger turn is answered in several
Waiter = tuple["Served", "asyncio.Future[Answer]"]


class TurnLists:
    """One event loop's batches of lists (one instance per serving process, i.e. per worker)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._batch: list[Waiter] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counters: tuple[Counter, Counter] | None = None

    def register(self, registry: CollectorRegistry) -> None:
        """``lambdarec_serving_list_batches_total`` and ``lambdarec_serving_list_batch_lists_total``: their ratio
        is how many lists one batch answered."""
        self._counters = (
            Counter("lambdarec_serving_list_batches_total",
                    "Batches of users' lists read from the store and ranked together (one or more per event-loop "
                    "turn; stores read inline).", registry=registry),
            Counter("lambdarec_serving_list_batch_lists_total",
                    "Lists those batches answered (lists per batch: how many requests shared a store read).",
                    registry=registry),
        )  # fmt: skip

    def answer(self, served: Served) -> asyncio.Future[Answer]:
        """A future of ``served``'s answer (:func:`serving_layer.user_list.answer_now`), given when this turn of
        the running event loop ends, with the other lists of its batch."""
        loop = asyncio.get_running_loop()
        if self._batch is None or self._loop is not loop:
            self._batch, self._loop = [], loop
            loop.call_soon(self._flush, self._batch)
        mine: asyncio.Future[Answer] = loop.create_future()
        self._batch.append((served, mine))
        if len(self._batch) >= MAX_LISTS:
            self._batch = None  # the next request starts another batch
        return mine

    def _flush(self, batch: list[Waiter]) -> None:
        if self._batch is batch:
            self._batch = None
        waiting = [(served, mine) for served, mine in batch if not mine.done()]  # done: the request went away
        if self._counters is not None and waiting:
            self._counters[0].inc()
            self._counters[1].inc(len(waiting))
        by_model: dict[int, list[Waiter]] = {}  # a snapshot swapped in mid-turn: each its own read
        for served, mine in waiting:
            by_model.setdefault(id(served.model), []).append((served, mine))
        for group in by_model.values():
            self._answer(group)

    def _answer(self, group: list[Waiter]) -> None:
        from serving_layer.user_list import answer_now  # user_list reads the service, which holds this

        service, model = self.service, group[0][0].model
        try:
            users = [served.query.user_id or "" for served, _ in group]
            states, degraded = service.user_states_inline(model, users, lists=len(group))
        except Exception as exc:  # a bug, not an outage (that is served degraded): each request answers 500
            for _, mine in group:
                mine.set_exception(exc)
            return
        for served, mine in group:
            try:
                mine.set_result(answer_now(service, served, states[served.query.user_id or ""], degraded))
            except Exception as exc:  # this list's alone
                mine.set_exception(exc)
