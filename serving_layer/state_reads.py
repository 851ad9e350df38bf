"""A request's store reads on a backend with non-blocking reads (Cassandra): the batch rows not yet cached and
the fresh state, sent together without waiting and awaited on the event loop, so a request costs one round trip
and no pool thread; under many concurrent requests none waits for a free thread (and times out doing so).

Example
-------
>>> states = await read_states_nonblocking(store, model.version, ["u1"], len(model.item_ids))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lambdarec.model.rows import UserRow, UserState
from lambdarec.store import CorruptRowError
from lambdarec.store.nonblocking import NonBlockingReads
from serving_layer.fresh_reads import FreshReader, FreshReads
from serving_layer.kept_states import KeptStates
from serving_layer.recommend import assemble_states, plan_reads
from serving_layer.shown_reads import usable, with_shown
from serving_layer.store_gate import StoreGate


async def read_states_nonblocking(
    store: NonBlockingReads,
    gate: StoreGate,
    version: str,
    user_ids: Iterable[str],
    n_items: int,
    known_rows: Mapping[str, UserRow] | None = None,
    shown: bool = False,
    fresh_reads: FreshReads | None = None,
    fresh_store: FreshReader | None = None,
    kept: KeptStates | None = None,
) -> dict[str, UserState]:
    """What :func:`~serving_layer.recommend.read_states` returns, read without blocking the event loop, within
    ``gate``'s timeout (:class:`~serving_layer.store_gate.StoreUnavailable` past it or on a store error); the
    fresh state read together with the other requests of this loop turn when ``fresh_reads`` is given, through
    ``fresh_store`` where given (:class:`~lambdarec.store.cassandra_native.NativeFreshReads`), else ``store``;
    only for users whose state ``kept`` does not hold (:mod:`serving_layer.kept_states`), where given: a request
    whose every read is in memory sends nothing."""
    ids, unread = plan_reads(user_ids, known_rows)
    if not ids:
        return {}
    gate.refuse_while_skipping()  # degraded mode: nothing is sent to a store that is down
    hits, to_read, epoch = kept.take(ids) if kept is not None else ({}, ids, None)
    reader: FreshReader = fresh_store or store
    sent: list[Any] = []
    if to_read:
        sent.append(
            reader.read_fresh_users_future(to_read) if fresh_reads is None else fresh_reads.read(reader, to_read)
        )
    if unread:
        sent.append(store.read_users_future(version, unread))
    if shown:  # the impressions rows (speed.feedback.own_consumer), in the same round trip
        sent.append(store.read_shown_future(ids))
    # a corrupt row costs only itself
    got = await gate.wait_all(sent, "read_states", keep=(CorruptRowError,)) if sent else []
    fresh = got.pop(0) if to_read else {}
    rows = got.pop(0) if unread else {}
    if isinstance(fresh, CorruptRowError):
        fresh.rows.update(hits)
    else:
        if kept is not None and to_read:
            kept.keep(to_read, fresh, epoch)
        fresh = {**hits, **fresh} if hits else fresh
    states = assemble_states(ids, rows, fresh, n_items, known_rows)  # type: ignore[arg-type]
    return with_shown(states, usable(got[0])) if shown else states
