"""Impressions apart from positive events (``speed.feedback.own_consumer``), as pure functions. No I/O here.

The positive-event consumer leaves ``impression`` records to the impressions consumer, which tells them apart
without decoding the whole event (:func:`~lambdarec.events.peek.is_impression`: one substring test, then a
decode of ``event_type`` alone), so an impression costs the positive path a read and a look, not a parse, a claim
and a state write; with ``log.impressions_topic`` it costs nothing, for they are in a log of their own. The
impressions consumer keeps each user's impressions in a row of their own (:class:`ShownItems`), idempotent by log
position as the fresh state is; serving joins it to the fresh row (:mod:`lambdarec.model.shown`).

Example
-------
>>> from lambdarec.events.peek import is_impression
>>> is_impression(b'{"event_type": "impression", "user_id": "u1", "item_ids": ["i1"]}')
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lambdarec.eventlog.base import Record
from lambdarec.eventlog.split import NOT_AN_IMPRESSION
from lambdarec.events import IMPRESSION, Event
from lambdarec.events.peek import is_impression
from lambdarec.model.rows import ShownItems
from lambdarec.settings import LogSettings, SpeedSettings
from lambdarec.settings.feedback import SpeedFeedbackSettings
from speed_layer.feedback import Feedback, most_recently_shown

Position = tuple[int, int]  # (partition, offset)


class PositivePath:
    """What the positive-event consumer polls and applies when impressions have their own consumer
    (``speed.feedback.own_consumer``): it skips them, and polls enough records at once that a batch still holds
    about ``speed.poll_max_records`` positive events (the poll grows with the share of impressions it has seen,
    up to ``speed.feedback.apart_poll_records``), so the per-batch cost is spread as it is without impressions.
    One poll per batch still: state is written and committed before the next poll, where a rebalance may happen.
    With ``log.impressions_topic`` ingest sends impressions to a log of their own, which this consumer never reads;
    any that still reach its log (a producer writing to the topic directly) it applies itself: none is lost.
    """

    def __init__(self, speed: SpeedSettings, log: LogSettings) -> None:
        self.apart = speed.feedback.own_consumer and log.impressions_topic is None  # else they are elsewhere
        self.wanted, self.most = speed.poll_max_records, max(speed.poll_max_records, speed.feedback.apart_poll_records)
        self.size = self.wanted

    def of(self, records: list[Record]) -> list[Record]:
        """The records to apply: all, or all but the impressions (and the next poll's size learnt from them)."""
        if not self.apart:
            return records
        mine = [r for r in records if not is_impression(r.value)]
        if len(records) >= self.size:  # a full poll: its share of positive events sizes the next one
            self.size = min(self.most, max(self.wanted, self.wanted * len(records) // max(len(mine), 1)))
        return mine


class ImpressionPath:
    """What the impressions consumer polls and applies: ``speed.feedback.impressions_poll_records`` records, their
    impressions (one read and one write of each user's row per poll, so a large poll is cheap per impression).
    On a log of their own (``log.impressions_topic``) every record is its own: one that is not an impression is
    refused with :data:`NOT_AN_IMPRESSION` (dead-lettered, never claimed nor applied; silently when an erasure of
    its user covers it); on the shared log the
    others are the positive-event consumer's, skipped after a look at ``event_type``."""

    def __init__(self, speed: SpeedSettings, log: LogSettings) -> None:
        self.size = speed.feedback.impressions_poll_records
        self.own_log = log.impressions_topic is not None

    def of(self, records: list[Record]) -> list[Record]:
        return records if self.own_log else [r for r in records if is_impression(r.value)]

    def applicable(
        self, good: list[tuple[Event, Position]], records: list[Record], rows: Mapping[str, ShownItems] | None = None
    ) -> tuple[list, list]:
        """``good``'s impressions, and the records of its other events with the reason they are refused.

        ``rows``: the impressions rows of the users of those other events. One at a position its user's row has
        passed (``forget`` sets the row past the log's end) is refused silently, as an erased impression is: an
        erased user's data never reaches the dead letters."""
        kept = [(e, pos) for e, pos in good if e.event_type == IMPRESSION]
        if len(kept) == len(good):
            return kept, []
        by_pos = {(r.partition, r.offset): r for r in records}
        rows = rows or {}
        refused = []
        for event, (partition, offset) in good:
            if event.event_type == IMPRESSION:
                continue
            row = rows.get(event.user_id)
            if row is None or offset >= row.positions.get(str(partition), 0):
                refused.append((by_pos[(partition, offset)], NOT_AN_IMPRESSION))
        return kept, refused

    @staticmethod
    def strays(good: list[tuple[Event, Position]]) -> set[str]:
        """The users of ``good``'s events that are not impressions (their rows tell :meth:`applicable` which an
        erasure covers)."""
        return {e.user_id for e, _ in good if e.event_type != IMPRESSION}


def apply_impressions(
    row: ShownItems | None, events: Sequence[tuple[Event, Position]], limits: SpeedFeedbackSettings
) -> ShownItems | None:
    """One user's impression ``events`` (log order) added to their impressions ``row``, bounded by ``limits`` as
    the fresh row's are (:meth:`Feedback.bounded`, the same result); None when every event had been applied before
    (a redelivery: nothing to write).

    The cost is per item the events show, not per item the row holds: the events' times are gathered per item
    first, and the row's other items are only looked at (in C: ``min``, ``len``) to learn whether any needs
    bounding, which after the first write none does until its impressions age past ``impressions_kept_s``."""
    if not events:
        return None
    positions = dict(row.positions) if row is not None else {}
    newest = row.updated_at if row is not None else 0.0
    added: dict[str, list[float]] = {}
    for event, (partition, offset) in events:
        key = str(partition)
        if offset < positions.get(key, 0):
            continue
        positions[key] = offset + 1
        ts = event.timestamp
        newest = ts if ts > newest else newest
        for item in event.item_ids or (event.item_id,):
            if (times := added.get(item)) is None:
                added[item] = [ts]
            else:
                times.append(ts)
    if not added:
        return None
    old = row.shown if row is not None else {}
    shown = dict(old)
    for item, times in added.items():
        if (before := old.get(item)) is not None:
            times[:0] = before
        shown[item] = times
    horizon, per_item = newest - limits.impressions_kept_s, limits.impressions_per_item
    if shown and (min(map(min, shown.values())) < horizon or max(map(len, shown.values())) > per_item):
        shown = Feedback(hidden={}, disliked={}, shown=shown).bounded(limits, newest).shown  # some to drop
    else:
        shown = most_recently_shown(shown, limits.max_shown_items)
    return ShownItems(user_id=events[0][0].user_id if row is None else row.user_id, shown=shown,
                      positions=positions, updated_at=newest,
                      erasure_seen=None if row is None else row.erasure_seen)  # fmt: skip
