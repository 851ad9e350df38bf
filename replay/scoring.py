"""Scoring replayed events in batches: what each scored event needs is read at its moment, the work is done later.

A scored event asks every variant for the user's list given the state just before the event. Reading that state
is cheap; solving the user's fold-in vector and ranking are not. So :class:`BatchScorer` takes a copy of the state
at the event (the fresh state without its vector, the session, the trending scores, the seen set) and,
every ``batch`` events or before the snapshot changes, solves the fold-ins of all of them in one batched solve
(:meth:`replay.online.OnlineState.solved`, the speed layer's own ``solve_many``) and asks each variant through
serving's request path (:func:`replay.variants.recommend`). The lists are those scoring each event at once gives:
the state objects are immutable, and the vector of a state solved later is the vector it would have had then.

Example
-------
>>> scorer = BatchScorer(variants, k=10, record=board_add)            # doctest: +SKIP
>>> scorer.add(online, "u1", "i3", now_s=t, session_id=None)          # doctest: +SKIP
>>> scorer.flush(online)  # before online.switch(...) and at the end   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lambdarec.rank.memo import known_indices
from lambdarec.store import FreshUser, UserRow
from replay.online import OnlineState
from replay.variants import Variant, popular_many, request
from serving_layer.recommend import RecommendQuery, rank_many
from speed_layer.runtime import collector_paused


@dataclass(frozen=True)
class ScoredEvent:
    """A scored event and the state just before it, as serving would have read it then."""

    user_id: str
    target: str  # the event's item
    now_s: float
    row: UserRow | None
    fresh: FreshUser | None  # maybe without its fold-in vector: solved in the batch
    session: list[tuple[str, float]]
    trending: np.ndarray | None  # decayed counts: the block merge takes the head of their order for many at once
    exclude: frozenset[str]
    exclude_indices: np.ndarray  # ``exclude``'s items in the snapshot (the popular floor's seen set reads them)


Record = Callable[[ScoredEvent, dict[str, list[str]]], None]


class BatchScorer:
    """Collects scored events and ranks them ``batch`` at a time; ``record`` gets each event's lists in order."""

    def __init__(self, variants: Sequence[Variant], k: int, record: Record, batch: int = 256) -> None:
        self.variants = list(variants)
        self.k = k
        self.record = record
        self.batch = batch
        self.trending = any(v.kind == "lambda" and v.trending for v in self.variants)
        self._events: list[ScoredEvent] = []

    def add(self, online: OnlineState, user_id: str, target: str, now_s: float, session_id: str | None) -> None:
        """Take the state of ``user_id`` just before an event at ``now_s``; rank when the batch is full."""
        trending = online.trending(now_s) if self.trending else None
        self._events.append(
            ScoredEvent(
                user_id=user_id,
                target=target,
                now_s=now_s,
                row=online.history(user_id),
                fresh=online.state(user_id, solve=False),
                session=online.session(user_id, now_s, session_id),
                trending=trending,
                exclude=online.touched(user_id),  # the same seen set for every variant: fair filtering
                exclude_indices=online.touched_indices(user_id),
            )
        )
        if len(self._events) >= self.batch:
            self.flush(online)

    def flush(self, online: OnlineState) -> None:
        """Rank every collected event against ``online``'s current snapshot (call it before the snapshot changes)."""
        events, self._events = self._events, []
        if not events:
            return
        # A flush builds thousands of short-lived objects (requests, merge inputs, lists) that reference no cycle and
        # are freed as it returns: the collector's passes over them, which their number triggers, find nothing.
        with collector_paused():
            self._rank(online, events)

    def _rank(self, online: OnlineState, events: list[ScoredEvent]) -> None:
        model = online.model
        asks, lists = [], []
        solved = online.solved([e.fresh for e in events])
        # with no feedback applied, an event's fresh state names only items its ``exclude`` (the touched items, whose
        # indices the replay keeps) holds: neither the popular floor nor the block looks their names up again
        fresh_seen = [None] * len(events) if online.touched_holds_fresh else solved
        floor = (popular_many(model, [e.row for e in events], fresh_seen, self.k,
                              [e.exclude_indices for e in events])
                 if any(v.kind == "popular" for v in self.variants) else [])  # fmt: skip
        for at, (event, fresh) in enumerate(zip(events, solved, strict=True)):
            state = {"row": event.row, "fresh": fresh, "session": event.session, "trending": event.trending}
            mine: dict[str, list[str]] = {}
            queries: dict[tuple[str, ...], RecommendQuery] = {}  # the variants of one event share equal queries
            for v in self.variants:
                if v.kind == "popular":
                    mine[v.name] = floor[at]
                else:
                    ask = request(v, model, **state, now_s=event.now_s, k=self.k, user_id=event.user_id,
                                  exclude=event.exclude, queries=queries)  # fmt: skip
                    asks.append((mine, v.name, ask))
            lists.append(mine)
        # every variant of every event in one block merge; the exclude sets' indices are those the replay keeps
        handed: list[tuple[frozenset[str] | FreshUser, np.ndarray]] = [(e.exclude, e.exclude_indices) for e in events]
        if online.touched_holds_fresh:
            handed += [(f, e.exclude_indices) for e, f in zip(events, solved, strict=True) if f is not None]
        with known_indices(model, handed):
            ranked = rank_many(model, [ask for _, _, ask in asks])
        for (mine, name, _), (items, _) in zip(asks, ranked, strict=True):
            mine[name] = [r.item_id for r in items]
        for event, mine in zip(events, lists, strict=True):
            self.record(event, {v.name: mine[v.name] for v in self.variants})
