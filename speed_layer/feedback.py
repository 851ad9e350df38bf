"""Negative feedback and impressions in a user's fresh state, as pure functions. No I/O here.

``dislike`` and ``hide`` record the item with its event time (a later positive event on the item takes the
dislike back: the user changed their mind; a hide stays). An ``impression`` appends its event time to each
shown item's impression times; a positive event on an item clears them (the user acted on it, so it is not
fatigued). Everything is bounded by ``speed.feedback.*``, newest kept. Serving reads the result in
:mod:`lambdarec.rank.feedback`.

Example
-------
>>> fb = Feedback.of(state)                                  # doctest: +SKIP
>>> fb.add(event); fb.positive("i7", ts)                     # doctest: +SKIP
>>> fb.bounded(settings.feedback, newest)                    # doctest: +SKIP
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from lambdarec.events import DISLIKE, HIDE, IMPRESSION, Event
from lambdarec.model.rows import FreshUser
from lambdarec.settings.feedback import SpeedFeedbackSettings


@dataclass
class Feedback:
    """A user's negative feedback and impressions, being updated (copies of the state's fields)."""

    hidden: dict[str, float]
    disliked: dict[str, float]
    shown: dict[str, list[float]]

    @classmethod
    def of(cls, state: FreshUser) -> Feedback:
        # the lists are shared with the state, never changed in place: a changed item gets a new list
        return cls(dict(state.hidden), dict(state.disliked), dict(state.shown))

    def add(self, event: Event) -> None:
        """Record one feedback event (``dislike``, ``hide`` or ``impression``); other types change nothing."""
        if event.event_type == HIDE:
            self.hidden[event.item_id] = max(event.timestamp, self.hidden.get(event.item_id, 0.0))
        elif event.event_type == DISLIKE:
            self.disliked[event.item_id] = max(event.timestamp, self.disliked.get(event.item_id, 0.0))
        elif event.event_type == IMPRESSION:
            shown, ts = self.shown, event.timestamp
            for item in event.item_ids or (event.item_id,):
                shown[item] = [*shown.get(item, ()), ts]

    def positive(self, item_id: str, timestamp: float) -> None:
        """A positive event on ``item_id``: its impressions before it stop counting, a dislike before it is undone."""
        if (times := self.shown.get(item_id)) is not None:
            later = [t for t in times if t > timestamp]
            if later:
                self.shown[item_id] = later
            else:
                del self.shown[item_id]
        if self.disliked.get(item_id, float("inf")) <= timestamp:
            del self.disliked[item_id]

    def bounded(self, limits: SpeedFeedbackSettings, newest: float) -> Feedback:
        """Within ``limits``: the newest hides and dislikes; for the most recently shown items, the newest
        impressions no older than ``impressions_kept_s`` before ``newest`` (event time)."""
        horizon, per_item = newest - limits.impressions_kept_s, limits.impressions_per_item
        shown: dict[str, list[float]] = {}
        for item, times in self.shown.items():
            if len(times) <= per_item and min(times) >= horizon:  # the common case: nothing to drop
                shown[item] = times
            elif live := sorted(t for t in times if t >= horizon)[-per_item:]:
                shown[item] = live
        shown = most_recently_shown(shown, limits.max_shown_items)
        return Feedback(_newest(self.hidden, limits.max_hidden), _newest(self.disliked, limits.max_disliked), shown)


def most_recently_shown(shown: dict[str, list[float]], n: int) -> dict[str, list[float]]:
    """``shown``'s ``n`` most recently shown items (by their last impression, then id); ``shown`` itself when it
    holds no more. Found by dropping the fewest: a full row that gains a few items loses a few, in one C pass."""
    excess = len(shown) - n
    if excess <= 0:
        return shown
    if excess >= n:
        return {i: shown[i] for _, i in heapq.nlargest(n, [(t[-1], i) for i, t in shown.items()])}
    kept = dict(shown)
    for _, item in heapq.nsmallest(excess, [(t[-1], i) for i, t in shown.items()]):
        del kept[item]
    return kept


def _newest(items: dict[str, float], n: int) -> dict[str, float]:
    if len(items) <= n:
        return items
    return {i: items[i] for i in heapq.nlargest(n, items, key=lambda i: (items[i], i))}
