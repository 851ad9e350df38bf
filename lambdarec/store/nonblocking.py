"""Reads that do not block the caller: the capability a backend with its own I/O thread offers (Cassandra), so
that serving sends a request's store reads at once, side by side, and awaits them on its event loop instead of
parking one pool thread per request.

Example
-------
>>> if isinstance(store, NonBlockingReads):                                   # doctest: +SKIP
...     rows = await asyncio.wrap_future(store.read_users_future(version, ["u1", "u2"]))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol, TypeVar, runtime_checkable

from lambdarec.model.rows import FreshUser, ShownItems, UserRow

T = TypeVar("T")


@runtime_checkable
class NonBlockingReads(Protocol):
    """A store whose per-user reads can be sent without waiting.

    Each future resolves to exactly what the blocking read (``read_users``, ``read_fresh_users``, ``read_shown``)
    returns, or raises what it raises: a ``CorruptRowError`` carrying the good rows, a ``StoreUnavailableError``...
    """

    def read_users_future(self, version: str, user_ids: Sequence[str]) -> Future[dict[str, UserRow]]: ...

    def read_fresh_users_future(self, user_ids: Sequence[str]) -> Future[dict[str, FreshUser]]: ...

    def read_shown_future(self, user_ids: Sequence[str]) -> Future[dict[str, ShownItems]]: ...


def gather(
    send: Callable[[], Sequence[Any]], finish: Callable[[list[Any]], T], error: Callable[[BaseException], BaseException]
) -> Future[T]:
    """One future for the driver requests ``send()`` sends together (each with ``add_callbacks(callback,
    errback)``, as the Cassandra driver's ``ResponseFuture``): ``finish(answers)`` (in request order) once all
    have answered, else ``error(exc)`` of the first failure, or of ``send`` itself. ``finish`` runs on the thread
    of the last answer."""
    out: Future[T] = Future()
    try:
        requests = send()
    except Exception as exc:  # e.g. preparing the statement failed: the future says so, as a failed read would
        out.set_exception(error(exc))
        return out
    answers: list[Any] = [None] * len(requests)
    left = [len(requests)]
    lock = threading.Lock()

    def settle(set_outcome: Callable[[Any], None], value: Any) -> None:
        # InvalidStateError: the caller gave up (a timeout cancelled it), or a failure settled it first
        with contextlib.suppress(InvalidStateError):
            set_outcome(value)

    def answered(rows: Any, i: int) -> None:
        with lock:
            answers[i] = rows
            left[0] -= 1
            last = left[0] == 0
        if last and not out.done():
            try:
                result = finish(answers)
            except Exception as exc:  # a corrupt row: the caller gets what the blocking read raises
                settle(out.set_exception, exc)
            else:
                settle(out.set_result, result)

    def failed(exc: BaseException, _i: int) -> None:
        settle(out.set_exception, error(exc))

    if not requests:
        settle(out.set_result, finish([]))
    for i, request in enumerate(requests):
        request.add_callbacks(answered, failed, callback_args=(i,), errback_args=(i,))
    return out
