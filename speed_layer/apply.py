"""A batch of events applied to fresh state, one poison record never holding back the others. No I/O here.

The new user states (fold-in vectors solved in bulk) and trending shards for a batch are computed from what the
consumer read from the store; a record whose application raises is a *poison* record: it is left out with the
reason, and the others are computed again without it, until none raises (each round drops at least one, so this
ends).

Example
-------
>>> by_user, by_item = group_events(good)                                   # doctest: +SKIP
>>> users, items, poison = compute_states(by_user, by_item, inputs)          # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lambdarec.events import FEEDBACK_TYPES, Event
from lambdarec.logs import get_logger
from lambdarec.model.freshstate import solve_many
from lambdarec.model.rows import FreshUser, TrendingItem, UserRow, trending_key
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import SpeedSettings
from speed_layer.fresh_items import ItemInputs, with_item_users
from speed_layer.state import Position, apply_trending, apply_user_events, needs_solve

log = get_logger(__name__)

Events = list[tuple[Event, Position]]
State = TypeVar("State")


@dataclass(frozen=True)
class BatchInputs:
    """What the store held for a batch's users and items, and how to weigh and solve its events."""

    model: SnapshotModel | None
    states: dict[str, FreshUser]
    history: dict[str, UserRow]
    trending: dict[str, TrendingItem]
    weights: dict[str, float]
    speed: SpeedSettings
    appended: dict[Position, float]  # a record's append time (epoch s); each state row keeps its newest event's
    # (events.dedup_window_s, events.dedup_ids_per_user): each state keeps its applied events' ids (speed_layer.seen)
    seen: tuple[float, int] | None = None


def item_inputs(i: BatchInputs) -> ItemInputs:
    """What brand-new items' terms read of a batch's inputs (:mod:`speed_layer.fresh_items`)."""
    return ItemInputs(i.model, i.states, i.history, i.trending, i.weights, i.speed.fresh_item_users)


def describe(exc: BaseException) -> str:
    """``exc`` in one line, for a dead letter's reason."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def group_events(good: Events) -> tuple[dict[str, Events], dict[str, Events]]:
    """The events by user, and by trending shard (item, partition)."""
    by_user: dict[str, Events] = defaultdict(list)
    by_item: dict[str, Events] = defaultdict(list)
    for event, pos in good:
        by_user[event.user_id].append((event, pos))
        if event.event_type not in FEEDBACK_TYPES:  # feedback never counts in trending: no shard read or written
            by_item[trending_key(event.item_id, pos[0])].append((event, pos))
    return by_user, by_item


def isolated(apply: Callable[[str, Events], State | None], key: str, events: Events, found: dict) -> State | None:
    """``apply(key, events)``; when it raises, apply the events one at a time and record each one that raises in
    ``found`` (position -> reason), so one poison record never holds back the others."""
    if not events:
        return None
    try:
        return apply(key, events)
    except MemoryError:
        raise
    except Exception:
        kept: Events = []
        for event, pos in events:
            try:
                apply(key, [*kept, (event, pos)])
            except MemoryError:
                raise
            except Exception as exc:
                found[pos] = f"could not be applied: {describe(exc)}"
                continue
            kept.append((event, pos))
        return apply(key, kept) if kept else None


def compute_states(
    by_user: dict[str, Events], by_item: dict[str, Events], inputs: BatchInputs
) -> tuple[list[FreshUser], list[TrendingItem], dict[Position, str]]:
    """The new user states and trending shards, and the poison records left out with the reason."""
    poison: dict[Position, str] = {}
    while True:
        found: dict[Position, str] = {}
        users = _user_states(by_user, inputs, poison, found)
        items = _trending_shards(by_item, inputs, poison, found)
        if not found:
            return users, with_item_users(items, users, by_item, item_inputs(inputs)), poison
        for pos, reason in found.items():
            log.error("speed.poison_record", partition=pos[0], offset=pos[1], reason=reason)
        poison.update(found)


def _newest(inputs: BatchInputs, events: Events) -> float:
    return max((inputs.appended.get(pos, 0.0) for _, pos in events), default=0.0)


def _user_states(
    by_user: dict[str, Events], inputs: BatchInputs, skip: dict[Position, str], found: dict[Position, str]
) -> list[FreshUser]:
    model, history = inputs.model, inputs.history

    def apply(user_id: str, events: Events) -> FreshUser | None:
        return apply_user_events(
            inputs.states.get(user_id), events, model, history.get(user_id), settings=inputs.speed,
            default_weights=inputs.weights, solve_vector=False, appended_at=_newest(inputs, events),
            seen=inputs.seen,
        )  # fmt: skip

    users = []
    for user_id, events in by_user.items():
        live = [(e, p) for e, p in events if p not in skip]
        new = isolated(apply, user_id, live, found)
        if new is not None:
            users.append(new)
    if model is None or not users:
        return users
    changed, unchanged = [], []  # unchanged: feedback only, the vector stays
    for u in users:
        (changed if needs_solve(u, inputs.states.get(u.user_id), model) else unchanged).append(u)
    users = changed
    try:
        return unchanged + solve_many(users, model, [history.get(u.user_id) for u in users])
    except MemoryError:
        raise
    except Exception:  # one user's data breaks the batched solve: find whose, alone
        solved = []
        for user in users:
            try:
                solved.extend(solve_many([user], model, [history.get(user.user_id)]))
            except MemoryError:
                raise
            except Exception as exc:
                for _, pos in by_user[user.user_id]:
                    if pos not in skip:
                        found[pos] = f"could not be applied (fold-in of user {user.user_id!r}): {describe(exc)}"
        return unchanged + solved


def _trending_shards(
    by_item: dict[str, Events], inputs: BatchInputs, skip: dict[Position, str], found: dict[Position, str]
) -> list[TrendingItem]:
    half_life = inputs.speed.trending_half_life_s

    def apply(key: str, events: Events) -> TrendingItem | None:
        return apply_trending(inputs.trending.get(key), events, inputs.weights, half_life, _newest(inputs, events))

    items = []
    for key, events in by_item.items():
        live = [(e, p) for e, p in events if p not in skip and p not in found]
        new = isolated(apply, key, live, found)
        if new is not None:
            items.append(new)
    return items
