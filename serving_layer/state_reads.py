"""A request's store reads on a backend with non-blocking reads (Cassandra): the batch rows not yet cached and
the fresh state, sent together without waiting and awaited on the event loop, so a request costs one round trip
and no pool thread; under many concurrent requests none waits for a free thread (and times out doing so).

Example
-------
>>> states = await read_states_nonblocking(store, model.version, ["u1"], len(model.item_ids))   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from lambdarec.model.rows import UserRow, UserState
from lambdarec.store import CorruptRowError
from lambdarec.store.nonblocking import NonBlockingReads
from serving_layer.recommend import assemble_states, plan_reads


async def read_states_nonblocking(
    store: NonBlockingReads,
    version: str,
    user_ids: Iterable[str],
    n_items: int,
    known_rows: Mapping[str, UserRow] | None = None,
) -> dict[str, UserState]:
    """What :func:`~serving_layer.recommend.read_states` returns, read without blocking the event loop."""
    ids, unread = plan_reads(user_ids, known_rows)
    if not ids:
        return {}
    sent = [store.read_fresh_users_future(ids)]
    if unread:
        sent.append(store.read_users_future(version, unread))
    got = await asyncio.gather(*(asyncio.wrap_future(f) for f in sent), return_exceptions=True)
    for outcome in got:
        if isinstance(outcome, BaseException) and not isinstance(outcome, CorruptRowError):
            raise outcome  # the store failed: the caller serves degraded
    fresh, rows = got[0], got[1] if unread else {}
    return assemble_states(ids, rows, fresh, n_items, known_rows)  # type: ignore[arg-type]
