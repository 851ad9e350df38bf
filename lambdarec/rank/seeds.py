"""What the merge reads from a request's session and fresh state: the seed items and their recency weights, the
items the user already has, and how much recent fresh evidence there is (see :mod:`lambdarec.rank.merge`).

Example
-------
>>> weighted([("a", 0.0), ("b", 10.0)], {"a": 0, "b": 1}, now_s=10.0, half_life_s=10.0)
{0: 0.5, 1: 1.0}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.freshstate import uncovered
from lambdarec.model.rows import FreshUser
from lambdarec.rank.memo import recent_seeds

_item, _time = itemgetter(0), itemgetter(1)  # an event's or a session item's id and time

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def seeds_of(
    model: SnapshotModel,
    session: Sequence[tuple[str, float]],
    fresh: FreshUser | None,
    now_s: float,
    half_life_s: float,
) -> dict[int, float]:
    """Session and recent items with their recency weights (the newest weighs 1): each item once, with its largest
    weight, at its first place (session first). The recent items' part is kept for the state (never changed)."""
    index = model.item_index
    seeds = weighted(session, index, now_s, half_life_s)
    if fresh is None:
        return seeds
    recent_items = fresh.recent
    recent = recent_seeds(model, fresh, now_s, half_life_s, lambda: weighted(recent_items, index, now_s, half_life_s))
    if not seeds:
        return recent
    for i, weight in recent.items():
        if weight > seeds.get(i, -1.0):
            seeds[i] = weight
    return seeds


def weighted(
    events: Sequence[tuple[str, float]], index: dict[str, int], now_s: float, half_life_s: float
) -> dict[int, float]:
    """The items of ``events`` (item, time) with weight ``0.5 ** (age / half_life_s)`` (1 without a time)."""
    seeds: dict[int, float] = {}
    for item_id, ts in events:
        i = index.get(item_id)
        if i is None:
            continue
        weight = 0.5 ** ((now_s - ts if now_s > ts else 0.0) / half_life_s) if now_s else 1.0
        if weight > seeds.get(i, -1.0):  # the largest weight, at the item's first place
            seeds[i] = weight
    return seeds


def fresh_items(fresh: FreshUser | None, model: SnapshotModel) -> Iterable[str]:
    """Items the user touched that the snapshot lacks, their recent items (covered ones are history too), and the
    items they hid or disliked (lambdarec.rank.feedback): none of them is recommended. Read once, in that order."""
    if fresh is None:
        return ()
    # map: no Python frame per event (a replayed user may hold hundreds)
    return chain(map(_item, uncovered(fresh, model)[0]), map(_item, fresh.recent), fresh.hidden, fresh.disliked)


def evidence(
    model: SnapshotModel,
    fresh: FreshUser | None,
    session: Sequence[tuple[str, float]],
    now_s: float,
    half_life_s: float,
) -> float:
    """``e / (1 + e)`` with ``e`` the recency-weighted count of the fresh events after the snapshot's cut-off and
    of the session's items: see :func:`lambdarec.rank.merge.fresh_evidence`."""
    if (fresh is None and not session) or not now_s:
        return 0.0
    cutoff = model.cutoff_s
    # each age as evidence_many computes it (max(now - t, 0) in float64), fresh events after the cut-off first
    ages = [now_s - t if now_s > t else 0.0 for _, t, _ in (fresh.events if fresh is not None else ()) if t > cutoff]
    ages += [now_s - t if now_s > t else 0.0 for _, t in session]
    e = 0.0
    for weight in np.exp2(-np.array(ages, dtype=np.float64) / half_life_s).tolist():
        e += weight  # in order, as evidence_many's bincount adds (Python's sum() compensates from 3.12 on)
    return e / (1.0 + e)


def evidence_many(
    model: SnapshotModel,
    fresh: Sequence[FreshUser | None],
    sessions: Sequence[Sequence[tuple[str, float]]],
    now_s: Sequence[float],
    half_life_s: Sequence[float],
) -> np.ndarray:
    """:func:`evidence` of many requests (float64, one per request) in one pass over all their event times, each
    request's summed in the same order (a block gives each request what a request alone gets)."""
    n = len(fresh)
    events = [f.events if f is not None and now else () for f, now in zip(fresh, now_s, strict=True)]
    sessions = [s if now else () for s, now in zip(sessions, now_s, strict=True)]
    n_fresh, n_session = [len(e) for e in events], [len(s) for s in sessions]
    times = np.fromiter(map(_time, chain(chain.from_iterable(events), chain.from_iterable(sessions))), np.float64)
    owner = np.concatenate((np.repeat(np.arange(n), n_fresh), np.repeat(np.arange(n), n_session)))
    keep = np.ones(times.size, dtype=bool)
    keep[: sum(n_fresh)] = times[: sum(n_fresh)] > model.cutoff_s  # a session item counts whenever it was
    owner, times = owner[keep], times[keep]
    age = np.maximum(np.asarray(now_s, dtype=np.float64)[owner] - times, 0.0)
    e = np.bincount(owner, weights=np.exp2(-age / np.asarray(half_life_s, dtype=np.float64)[owner]), minlength=n)
    return e / (1.0 + e)
