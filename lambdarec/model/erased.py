"""An erasure is the last word on a user's rows, whichever write lands last.

``forget`` writes each erased user's tombstone twice: as the row, and into the row's ``erasure`` column, which
no consumer ever writes. A consumer that read the user's row before the erasure and writes after it (a batch's
read-to-write window) replaces the row but not the column; its row does not say it has seen that erasure
(``erasure_seen``), so every reader, the consumers included, sees the row through :func:`masked`: nothing from
before the erasure, only what the log brought after it. The next state a consumer writes from there has seen the
erasure, and the column stops mattering.

A brand-new item's trending shards keep the fold-in vector of each of its users (``TrendingItem.terms``): the
store also lists the users erased lately (``erased_users``) and every read of the shards leaves them out
(:func:`without_users`), so serving never solves an item's vector with an erased user's term, and a consumer's next
write of the shard drops it from the store.

Example
-------
>>> stale = FreshUser(user_id="u1", events=[("i1", 10.0, 1.0), ("i2", 30.0, 1.0)],
...                   event_positions=[(0, 3), (0, 9)], positions={"0": 10})
>>> grave = FreshUser(user_id="u1", positions={"0": 5}, erased_at=20.0, erasure_seen=20.0)
>>> masked(stale, grave).events          # only the event appended after the erasure (position 9 >= 5)
[('i2', 30.0, 1.0)]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lambdarec.model.freshstate import positions_of
from lambdarec.model.rows import FRESH_FORMAT, FreshUser, ShownItems, TrendingItem


def _unseen(row: FreshUser | ShownItems | None, erasure: FreshUser | ShownItems) -> bool:
    """Whether ``erasure`` is newer than anything ``row`` was built after."""
    if erasure.erasure_seen is None:
        return False
    return row is None or (row.erasure_seen or 0.0) < erasure.erasure_seen


def _positions(row: dict[str, int], erasure: dict[str, int]) -> dict[str, int]:
    return {p: max(row.get(p, 0), erasure.get(p, 0)) for p in {*row, *erasure}}


def masked(state: FreshUser | None, erasure: FreshUser | None) -> FreshUser | None:
    """``state`` as readers must see it given the user's stored ``erasure`` (a tombstone, or None).

    A state built before the erasure keeps only its interactions at log positions past the erasure's (appended
    after it: still the user's) with their recent items; its vector (solved from older events too), its
    feedback (hidden, disliked, shown: no positions say when) and its batch history are dropped."""
    if erasure is None or not _unseen(state, erasure):
        return state
    if state is None:
        return erasure
    kept = [
        (event, pos)
        for event, pos in zip(state.events, positions_of(state), strict=True)
        if pos is not None and pos[1] >= erasure.positions.get(str(pos[0]), 0)
    ]
    after = {(event[0], event[1]) for event, _ in kept}
    return FreshUser(
        user_id=state.user_id,
        events=[event for event, _ in kept],
        recent=[r for r in state.recent if (r[0], r[1]) in after],
        positions=_positions(state.positions, erasure.positions),
        updated_at=max((event[1] for event, _ in kept), default=erasure.updated_at),
        appended_at=state.appended_at if kept else erasure.appended_at,
        event_positions=[pos for _, pos in kept],
        erased_at=erasure.erased_at,
        erasure_seen=erasure.erasure_seen,
        format=FRESH_FORMAT,
    )


def masked_shown(row: ShownItems | None, erasure: ShownItems | None) -> ShownItems | None:
    """A user's impressions row as readers must see it given their stored ``erasure``: one written before it
    keeps no impression (they carry no log position), only its positions (what it has applied)."""
    if erasure is None or not _unseen(row, erasure):
        return row
    if row is None:
        return erasure
    return ShownItems(
        user_id=row.user_id,
        positions=_positions(row.positions, erasure.positions),
        updated_at=erasure.updated_at,
        erasure_seen=erasure.erasure_seen,
    )


def shard_users(shards: dict[str, TrendingItem]) -> list[str]:
    """The users with a term in any of ``shards`` (brand-new items' shards), each once."""
    return list(dict.fromkeys(u for shard in shards.values() for u in shard.term_users))


def without_users(shards: Iterable[tuple[str, TrendingItem]], erased: set[str]) -> dict[str, TrendingItem]:
    """``key -> shard`` with the terms of the ``erased`` users left out of each brand-new item's users (all of an
    erased user's terms: one who came back after the erasure is left out too until the list forgets them)."""
    if not erased:
        return dict(shards)
    out = {}
    for key, shard in shards:
        if shard.term_users and not erased.isdisjoint(shard.term_users):
            terms = shard.terms
            out[key] = shard.with_terms(terms.select(np.array([u not in erased for u in terms.users], dtype=bool)))
        else:
            out[key] = shard
    return out
