"""Fresh state as pure functions of (state, events, snapshot model). No I/O here.

Idempotence: each state remembers, per log partition, the next position it has not applied. An event at an
earlier position was applied already (a redelivery after a crash) and is skipped, so at-least-once delivery
yields exactly-once state. A user's events share a partition (the log is keyed by user id), and so do the
updates of one item within one partition, so the positions are enough.

Example
-------
>>> state = apply_user_events(None, [(event, (0, 17))], model, None, settings=speed)   # doctest: +SKIP
>>> state.positions                                                                   # doctest: +SKIP
{'0': 18}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter

from msgspec import structs

from lambdarec.events import FEEDBACK_TYPES, Event
from lambdarec.model.freshstate import positions_of, solve
from lambdarec.model.rows import FRESH_FORMAT, FreshUser, TrendingItem, UserRow
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.defects import FLOAT32_MAX, count_nonfinite
from lambdarec.rank.trending import decayed
from lambdarec.settings import SpeedSettings
from speed_layer.feedback import Feedback
from speed_layer.seen import in_state, recorded

Position = tuple[int, int]  # (partition, offset)


def event_weight(event: Event, event_weights: dict[str, float]) -> float:
    """The event type's weight times the event's own weight, as the batch layer weighs a row."""
    return event_weights.get(event.event_type, 1.0) * (1.0 if event.weight is None else event.weight)


def is_positive(event: Event, event_weights: dict[str, float]) -> bool:
    """Whether ``event`` counts as an interaction (fold-in, recent items, trending): any type but the feedback
    types (``dislike``, ``hide``, ``impression``), unless the weights give one a weight to train on."""
    return event.event_type not in FEEDBACK_TYPES or event.event_type in event_weights


def _is_new(positions: dict[str, int], pos: Position) -> bool:
    return pos[1] >= positions.get(str(pos[0]), 0)


def apply_user_events(
    state: FreshUser | None,
    events: Sequence[tuple[Event, Position]],
    model: SnapshotModel | None,
    history: UserRow | None,
    *,
    settings: SpeedSettings,
    default_weights: dict[str, float] | None = None,
    solve_vector: bool = True,
    appended_at: float = 0.0,
    seen: tuple[float, int] | None = None,
) -> FreshUser | None:
    """Apply one user's events (in log order) and re-solve the fold-in vector once.

    Returns the new state, or None when every event had been applied before (nothing to write).
    ``history`` is the user's row in ``model``'s snapshot (None for a user the batch did not see).
    With ``solve_vector=False`` the caller solves many users at once with ``solve_many``. ``appended_at`` is
    when the newest of ``events`` was appended to the log (epoch s): the state keeps the newest such time, which
    serving measures freshness from. ``seen``: ``(events.dedup_window_s, events.dedup_ids_per_user)``: the state
    keeps the applied events' ids (:mod:`speed_layer.seen`); None keeps those it had.
    """
    if not events:
        return None
    prior, state = state, state or FreshUser(user_id=events[0][0].user_id)
    positions = dict(state.positions)
    fresh = list(zip(state.events, positions_of(state), strict=True))
    recent = list(state.recent)
    weights = model.event_weights if model is not None and model.event_weights else (default_weights or {})
    applied, positives, newest = 0, 0, max(map(_event_time, state.events), default=state.updated_at)
    feedback = Feedback.of(state)
    ids: list[str] = []
    for event, pos in events:
        if not _is_new(positions, pos):
            continue
        positions[str(pos[0])] = pos[1] + 1
        applied += 1
        if in_state(event):  # not an impression's: those are claimed in the store, and would crowd the others out
            ids.append(event.event_id)
        newest = max(newest, event.timestamp)
        if not is_positive(event, weights):
            feedback.add(event)
            continue
        feedback.positive(event.item_id, event.timestamp)
        positives += 1
        fresh.append(((event.item_id, event.timestamp, event_weight(event, weights)), pos))
        recent.append((event.item_id, event.timestamp))
    if applied == 0:
        return None
    feedback = feedback.bounded(settings.feedback, newest)
    if positives == 0:  # feedback only: the interactions, and so the vector, stay the very same objects
        events_kept, positions_kept, recent = state.events, state.event_positions, state.recent
    else:
        kept = _bounded_events(fresh, model, settings)
        events_kept, positions_kept = [e for e, _ in kept], [p for _, p in kept if p is not None]
        recent = _bounded_recent(recent, newest, settings)
    updated = FreshUser(
        user_id=state.user_id,
        events=events_kept,
        recent=recent,
        vector=state.vector,
        basis=state.basis,
        positions=positions,
        updated_at=max(state.updated_at, newest),
        appended_at=max(state.appended_at, appended_at),
        event_positions=positions_kept,
        erased_at=state.erased_at if model is None or model.built_at_s < (state.erased_at or 0.0) else None,
        erasure_seen=state.erasure_seen,
        hidden=feedback.hidden,
        disliked=feedback.disliked,
        shown=feedback.shown,
        seen_ids=state.seen_ids if seen is None else recorded(state.seen_ids, ids, appended_at, *seen),
        format=FRESH_FORMAT,
    )
    if model is None or not solve_vector or not needs_solve(updated, prior, model):
        return updated
    return solve(updated, model, history)


def needs_solve(new: FreshUser, old: FreshUser | None, model: SnapshotModel) -> bool:
    """Whether ``new``'s fold-in vector must be solved: its interactions changed (not the very same list as
    ``old``'s: feedback alone keeps it), it has none yet for a new user, or it was solved on another snapshot."""
    return old is None or new.events is not old.events or new.basis != model.version


def apply_trending(
    item: TrendingItem | None,
    events: Sequence[tuple[Event, Position]],
    weights: dict[str, float],
    half_life_s: float,
    appended_at: float = 0.0,
) -> TrendingItem | None:
    """Add events to an item's count decayed in event time: ``count(t) = sum w_e * 2^(-(t - t_e) / half_life)``.

    ``item`` is the item's shard for the events' partition (one consumer writes it). The sum is the same in
    any order; positions make it exactly-once.
    """
    if not events:
        return None
    item = item or TrendingItem(item_id=events[0][0].item_id, partition=events[0][1][0])
    count, as_of, positions = item.count, item.as_of, dict(item.positions)
    if not (math.isfinite(count) and math.isfinite(as_of) and 0.0 <= count <= FLOAT32_MAX):
        count_nonfinite("speed")  # a row poisoned before event values were bounded: start it again
        count, as_of = 0.0, 0.0
    applied = 0
    for event, pos in events:
        if not _is_new(positions, pos):
            continue
        positions[str(pos[0])] = pos[1] + 1
        applied += 1
        if not is_positive(event, weights):
            continue
        w = event_weight(event, weights)
        if event.timestamp >= as_of:
            count = decayed(count, as_of, event.timestamp, half_life_s) + w
            as_of = event.timestamp
        else:
            count += decayed(w, event.timestamp, as_of, half_life_s)
    if applied == 0:
        return None
    return TrendingItem(
        item_id=item.item_id,
        partition=item.partition,
        count=count,
        as_of=as_of,
        positions=positions,
        appended_at=max(item.appended_at, appended_at),
        basis=item.basis,
        term_users=item.term_users,
        term_weights=item.term_weights,
        term_vectors=item.term_vectors,
    )


def _bounded_recent(recent: list[tuple[str, float]], newest: float, settings: SpeedSettings) -> list[tuple[str, float]]:
    horizon = newest - settings.recent_ttl_s
    times = [r[1] for r in recent]
    if times and times[-settings.recent_items :][0] >= horizon and times == sorted(times):
        return recent[-settings.recent_items :]  # in time order (as kept), none of the newest expired: the same
    live = sorted((r for r in recent if r[1] >= horizon), key=_event_time)
    return live[-settings.recent_items :]


def _bounded_events(
    events: list[tuple[tuple[str, float, float], Position | None]], model: SnapshotModel | None, settings: SpeedSettings
) -> list[tuple[tuple[str, float, float], Position | None]]:
    """The newest ``max_fresh_events`` the snapshot does not cover (by log position); positions ride along."""
    live = [(e, p) for e, p in events if model is None or not model.covers(p, e[1])]
    # entries without a position (kept before positions were) all come first, so positions stay tail-aligned
    return live[-settings.max_fresh_events :]


def append_user_events(
    state: FreshUser,
    events: Sequence[tuple[Event, Position]],
    model: SnapshotModel,
    *,
    settings: SpeedSettings,
    default_weights: dict[str, float] | None = None,
    appended_at: float = 0.0,
) -> FreshUser | None:
    """:func:`apply_user_events` without solving, for the case an in-memory replay meets at almost every event:
    every event is new and positive, ``state`` holds no feedback and has a position for each event, and none of
    its events is covered by ``model`` (the caller bounded them against this very snapshot, which it must
    guarantee). The same state, without copying and re-checking every kept event; None when the case does not
    hold (call :func:`apply_user_events`) or for no event."""
    n_kept = len(state.events)
    if not events or state.hidden or state.disliked or state.shown or len(state.event_positions) != n_kept:
        return None
    weights = model.event_weights or (default_weights or {})
    positions = dict(state.positions)
    added, added_at, recent = [], [], list(state.recent)
    newest = max(map(_event_time, state.events), default=state.updated_at)
    for event, pos in events:
        if not _is_new(positions, pos) or not is_positive(event, weights):
            return None
        positions[str(pos[0])] = pos[1] + 1
        newest = max(newest, event.timestamp)
        if not model.covers(pos, event.timestamp):
            added.append((event.item_id, event.timestamp, event_weight(event, weights)))
            added_at.append(pos)
        recent.append((event.item_id, event.timestamp))
    keep = settings.max_fresh_events
    erased = state.erased_at if model.built_at_s < (state.erased_at or 0.0) else None
    return structs.replace(
        state,
        events=[*state.events, *added][-keep:],
        event_positions=[*state.event_positions, *added_at][-keep:],
        recent=_bounded_recent(recent, newest, settings),
        positions=positions,
        updated_at=max(state.updated_at, newest),
        appended_at=max(state.appended_at, appended_at),
        erased_at=erased,
        hidden={},
        disliked={},
        shown={},
        format=FRESH_FORMAT,
    )


# an event's or a recent item's time: C-level, no Python frame per event (replay reads long states per event)
_event_time = itemgetter(1)
