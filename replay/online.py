"""The online state of a replay, in memory: what the speed layer and the store would hold at each moment.

Every change goes through the speed layer's own pure functions (:func:`speed_layer.state.apply_user_events`,
:func:`speed_layer.state.apply_trending`) and the shared :func:`lambdarec.model.freshstate.rebase`; only the
storage differs (dicts instead of store rows), so the merge sees the state serving would read. Events get
log positions ``(0, n)`` in replay order, as one partition of the event log would give them.

Example
-------
>>> online = OnlineState(store, model, settings.speed, settings.batch.event_weights)   # doctest: +SKIP
>>> online.apply([event])                                                              # doctest: +SKIP
>>> online.state("u1").basis == model.version                                          # doctest: +SKIP
True
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from msgspec import structs

from lambdarec.events import FEEDBACK_TYPES, Event
from lambdarec.model.freshstate import rebase
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import SpeedSettings
from lambdarec.store import FreshUser, OnlineStore, TrendingItem, UserRow
from replay.foldin import IncrementalFoldIn
from speed_layer.state import append_user_events, apply_trending, apply_user_events


@dataclass
class Session:
    """A user's current session: its id (when the log names one), its last event time and its items."""

    session_id: str | None = None
    last_s: float = float("-inf")
    items: list[tuple[str, float]] = field(default_factory=list)


class OnlineState:
    """Per-user fresh state, sessions and per-item trending counts, kept against the current snapshot."""

    def __init__(
        self,
        store: OnlineStore,
        model: SnapshotModel,
        speed: SpeedSettings,
        event_weights: dict[str, float],
        session_gap_s: float = 1800.0,
    ) -> None:
        self.store = store
        self.speed = speed
        self.event_weights = dict(event_weights)
        self.session_gap_s = session_gap_s
        self.fresh: dict[str, FreshUser] = {}
        self.sessions: dict[str, Session] = {}
        self.trending_rows: dict[str, TrendingItem] = {}
        self._position = 0
        self._pending: dict[str, list[tuple[Event, tuple[int, int]]]] = defaultdict(list)
        self._history: dict[str, UserRow | None] = {}
        self._touched: dict[str, set[str]] = defaultdict(set)
        self._touched_at: dict[str, list[int]] = defaultdict(list)  # the touched items' indices in the snapshot
        self._unsolved: set[str] = set()  # users whose state holds their events but no fold-in vector yet
        # No feedback event (hide, dislike, impression) applied yet: every item a fresh state names is then one its
        # user touched, so ``touched`` holds it (a feedback type may count as positive when weighted: is_positive)
        self.touched_holds_fresh = True
        self.model = model
        # each user's fold-in system, updated as events arrive (the speed layer's solve, without re-solving)
        self._foldin = IncrementalFoldIn()
        self._load_trending_arrays()

    # ---- reads ---------------------------------------------------------------------------------------------

    def history(self, user_id: str) -> UserRow | None:
        """The user's row in the current snapshot (None for a user the batch did not see)."""
        if user_id not in self._history:
            self._history[user_id] = self.store.read_user(self.model.version, user_id)
        return self._history[user_id]

    def prefetch(self, user_ids: Iterable[str]) -> None:
        """Read the snapshot rows of many users in one call (the replay's users, before the loop)."""
        wanted = [u for u in dict.fromkeys(user_ids) if u not in self._history]
        rows = self.store.read_users(self.model.version, wanted) if wanted else {}
        for user_id in wanted:
            self._history[user_id] = rows.get(user_id)

    def touched(self, user_id: str) -> frozenset[str]:
        """Every item the user touched in the events applied so far (warm-up and replay): the fair seen set."""
        return frozenset(self._touched.get(user_id, ()))

    def touched_indices(self, user_id: str) -> np.ndarray:
        """The indices in the current snapshot of :meth:`touched`'s items (those it has), kept as events arrive."""
        return np.array(self._touched_at.get(user_id, ()), dtype=np.int64)

    def session(self, user_id: str, now_s: float, session_id: str | None = None) -> list[tuple[str, float]]:
        """The user's current session as (item, time), oldest first, seen just before an event at ``now_s``."""
        s = self.sessions.get(user_id)
        if s is None or self._starts_new(s, now_s, session_id):
            return []
        return list(s.items)

    def trending(self, now_s: float) -> np.ndarray:
        """Trending counts over the snapshot's items decayed to ``now_s``: ``trending_scores`` of the rows.

        Events often share their time (half of MovieLens' replayed events have their predecessor's): at the time
        of the previous call only the items whose count changed since are decayed again (the same values)."""
        last, changed = self._trending_last, self._trending_changed
        self._trending_changed = set()
        if last is not None and last[0] == now_s:
            out = last[1].copy()
            if changed:
                at = np.fromiter(changed, dtype=np.int64, count=len(changed))
                out[at] = self._decayed(at, now_s)
        else:
            out = self._decayed(slice(None), now_s)
        self._trending_last = (now_s, out)
        return out

    # ---- writes --------------------------------------------------------------------------------------------

    def apply(self, events: Sequence[Event]) -> None:
        """Apply events in log order: sessions and trending now, users' fresh state when next read.

        A user's pending events are applied in one :func:`apply_user_events` call (one fold-in solve) just before
        the state is read, which gives the state that applying them one at a time would give.
        """
        by_item: dict[str, list[tuple[Event, tuple[int, int]]]] = defaultdict(list)
        index = self.model.item_index
        for event in events:
            pos = (0, self._position)
            self._position += 1
            self._pending[event.user_id].append((event, pos))
            if event.event_type in FEEDBACK_TYPES:  # kept in the user's state; not seen, not a session, not trending
                self.touched_holds_fresh = False
                continue
            touched = self._touched[event.user_id]
            if event.item_id not in touched:
                touched.add(event.item_id)
                if (i := index.get(event.item_id)) is not None:
                    self._touched_at[event.user_id].append(i)
            by_item[event.item_id].append((event, pos))
            self._extend_session(event)
        weights = self.model.event_weights or self.event_weights
        for item_id, batch in by_item.items():
            new_item = apply_trending(self.trending_rows.get(item_id), batch, weights, self.speed.trending_half_life_s)
            if new_item is None:
                continue
            self.trending_rows[item_id] = new_item
            if (i := index.get(item_id)) is not None:
                self._count[i], self._as_of[i] = new_item.count, new_item.as_of
                self._trending_changed.add(i)

    def state(self, user_id: str, solve: bool = True) -> FreshUser | None:
        """The user's fresh state with every event applied so far (None for a user with no fresh event).

        With ``solve`` False a state whose events changed comes without its fold-in vector (``vector`` and
        ``basis`` None): the caller solves many of them in one batch (:meth:`solved`), as the speed layer does.
        """
        self.flush([user_id], solve=solve)
        return self.fresh.get(user_id)

    def solved(self, states: Sequence[FreshUser | None]) -> list[FreshUser | None]:
        """``states`` (taken from :meth:`state` with ``solve`` False, maybe at earlier moments) with their fold-in
        vectors against the current snapshot; a state that has its vector is kept. Each user's fold-in system is
        updated by the events since its last solve (:class:`replay.foldin.IncrementalFoldIn`: the speed layer's
        ``solve_many`` vectors within float rounding, without a full product and solve per scored event)."""
        todo = {id(s): s for s in states if s is not None and s.basis != self.model.version}
        if not todo:
            return list(states)
        vectors = self._foldin.solve_many(
            list(todo.values()), self.model, [self.history(s.user_id) for s in todo.values()]
        )
        done = dict(zip(todo, vectors, strict=True))
        for user_id in [u for u in self._unsolved if id(self.fresh[u]) in done]:
            self.fresh[user_id] = done[id(self.fresh[user_id])]  # the current state: no need to solve it again
            self._unsolved.discard(user_id)
        return [None if s is None else done.get(id(s), s) for s in states]

    def flush(self, user_ids: Iterable[str] | None = None, solve: bool = True) -> None:
        """Apply the pending events of ``user_ids`` (default: every user) through the speed layer's function,
        then (with ``solve``) solve the fold-in vectors of the changed states in one batch."""
        users = list(self._pending) if user_ids is None else list(user_ids)
        for user_id in users:
            batch = self._pending.pop(user_id, None)
            if not batch:
                continue
            state = self.fresh.get(user_id)
            # every state held was bounded against self.model (here, or rebased in switch()): none of its events
            # is covered, so new positive events are appended without re-checking the user's kept ones
            new = state and append_user_events(
                state, batch, self.model, settings=self.speed, default_weights=self.event_weights
            )
            if new is None:  # a new user, feedback, a redelivery: the speed layer's full update
                new = apply_user_events(
                    state,
                    batch,
                    self.model,
                    self.history(user_id),
                    settings=self.speed,
                    default_weights=self.event_weights,
                    solve_vector=False,
                )
            if new is not None:
                self.fresh[user_id] = structs.replace(new, vector=None, basis=None)  # msgspec's: no dict per call
                self._unsolved.add(user_id)
        if solve:
            todo = list(self._unsolved) if user_ids is None else [u for u in users if u in self._unsolved]
            self.solved([self.fresh[u] for u in todo])

    @property
    def position(self) -> int:
        """The replay's log position: events applied so far (offsets 0..position-1 of partition 0)."""
        return self._position

    def switch(self, model: SnapshotModel) -> None:
        """A new snapshot was published: re-solve every fresh state against it, as serving does after a flip.

        The snapshot's ``log_positions`` decide which fresh events it has (see ``SnapshotModel.covers``).
        """
        self.flush(solve=False)  # rebase() below solves every state against the new snapshot
        self.model = model
        self._history = {}
        self.prefetch(self.fresh)
        self.fresh = {u: rebase(state, model, self.history(u)) for u, state in self.fresh.items()}
        self._unsolved.clear()
        self._touched_at = defaultdict(list)
        for user_id, items in self._touched.items():
            self._touched_at[user_id] = [i for item in items if (i := model.item_index.get(item)) is not None]
        self._load_trending_arrays()

    # ---- internals -----------------------------------------------------------------------------------------

    def _starts_new(self, s: Session, now_s: float, session_id: str | None) -> bool:
        if session_id is not None and s.session_id is not None:
            return session_id != s.session_id
        return now_s - s.last_s > self.session_gap_s

    def _extend_session(self, event: Event) -> None:
        s = self.sessions.get(event.user_id)
        if s is None or self._starts_new(s, event.timestamp, event.session_id):
            s = self.sessions[event.user_id] = Session(session_id=event.session_id)
        s.last_s = event.timestamp
        s.items.append((event.item_id, event.timestamp))
        del s.items[: -self.speed.recent_items]

    def _decayed(self, at: np.ndarray | slice, now_s: float) -> np.ndarray:
        age = np.maximum(now_s - self._as_of[at], 0.0)
        return (self._count[at] * np.exp2(-age / self.speed.trending_half_life_s)).astype(np.float32)

    def _load_trending_arrays(self) -> None:
        n = len(self.model.item_ids)
        self._count = np.zeros(n, dtype=np.float64)
        self._as_of = np.zeros(n, dtype=np.float64)
        self._trending_last: tuple[float, np.ndarray] | None = None  # the last call's time and scores
        self._trending_changed: set[int] = set()  # items whose count changed since that call
        index = self.model.item_index
        for t in self.trending_rows.values():
            if (i := index.get(t.item_id)) is not None:
                self._count[i], self._as_of[i] = t.count, t.as_of
