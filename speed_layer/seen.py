"""Repeated event ids found in the user's own fresh state (``events.dedup``: ``"state"``, or ``"auto"`` once no
claim of an earlier release can be live). No I/O here.

Each state keeps the ids of the events applied to it within ``events.dedup_window_s`` of log time, as 8-byte hashes
with their append second (:attr:`FreshUser.seen_ids`). The consumer reads a poll's states anyway, so a resend is
found there with no request of its own; the store's claims (:mod:`speed_layer.claims`) cost one conditional write
per id. Exact for a repeat by the same user, because a user's events share a log partition and so have one writer
at a time (the same ground the state's positions stand on, :mod:`speed_layer.state`). The same id sent by
another user is not a repeat here.

Example
-------
>>> repeats = repeated(good, states)                      # doctest: +SKIP
>>> seen_ids = recorded(state.seen_ids, ids, 1.7e9, 86400, 1000)     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from lambdarec.events import IMPRESSION, Event
from lambdarec.model.rows import FreshUser, LogPosition


def id_hash(event_id: str) -> int:
    """A stable signed 64-bit hash of ``event_id`` (BLAKE2b): the same on every machine, release and run (Python's
    ``hash`` is salted per process). Two ids of one user collide with odds about n^2 / 2^65 (1e-13 for 1,000)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


def in_state(event: Event) -> bool:
    """Whether ``event``'s repeats are looked up in its user's state: every event but impressions, whose claims
    stay in the store (the impressions consumer writes no user state of this kind)."""
    return event.event_type != IMPRESSION


def repeated(good: Sequence[tuple[Event, LogPosition]], states: Mapping[str, FreshUser]) -> set[LogPosition]:
    """The positions in ``good`` whose id the same user's state holds already, or an earlier record of this poll
    carried (for the same user). A record at a position its state has applied is a redelivery, not a repeat: the
    positions skip it (:func:`speed_layer.state.apply_user_events`). Impressions are left to the store's claims."""
    known: dict[str, set[int]] = {}
    out: set[LogPosition] = set()
    for event, pos in good:
        if not in_state(event):
            continue
        state = states.get(event.user_id)
        if state is not None and pos[1] < state.positions.get(str(pos[0]), 0):
            continue  # applied before: a redelivery
        seen = known.get(event.user_id)
        if seen is None:
            seen = known[event.user_id] = {h for h, _ in state.seen_ids} if state is not None else set()
        h = id_hash(event.event_id)
        if h in seen:
            out.add(pos)
        else:
            seen.add(h)
    return out


def recorded(
    seen: Sequence[tuple[int, int]], event_ids: Iterable[str], appended_s: float, window_s: float, cap: int
) -> list[tuple[int, int]]:
    """``seen`` with ``event_ids`` (applied, appended at ``appended_s``) added, less what is older than
    ``window_s`` before it, at most the newest ``cap``."""
    now = int(appended_s)
    since = now - window_s
    out = [(h, at) for h, at in seen if at >= since]
    out.extend((id_hash(eid), now) for eid in event_ids)
    return out[-cap:] if len(out) > cap else out
