"""Impression events decoded in bulk, for the impressions consumer: one typed decode per record into what the
impressions path needs (:class:`Impression`), the common form checked in a few comparisons, and every other
record (another form, another type, anything doubtful) parsed whole by :func:`~lambdarec.events.parse_event`.

The quick checks only ever accept what ``parse_event`` accepts, with the same values: a record that fails one is
handed to ``parse_event``, which accepts it or refuses it with its reason, so a bad impression still reaches the
dead letters with exactly the reason the positive path would give. The quick form is an impression that lists its
items in ``item_ids``, with an epoch-seconds or ISO-8601 ``timestamp``; ids already seen to be valid are not
checked again (a bounded cache: item and user ids repeat across impressions).

Example
-------
>>> decoder = ImpressionDecoder(EventRules(known_types=None))
>>> good, reasons = decoder.decode([b'{"event_id":"e1","user_id":"u1","event_type":"impression",'
...                              b'"item_ids":["i1","i2"],"timestamp":1764400000}'], [1764400000.0])
>>> good[0].item_ids, good[0].timestamp, reasons
(('i1', 'i2'), 1764400000.0, [None])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from lambdarec.events.parse import EventRules, _epoch_seconds
from lambdarec.events.schema import IMPRESSION, SCHEMA_VERSION, BadEvent, Context, Event

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_GOOD_IDS_KEPT = 65_536  # valid ids remembered (users, items); cleared when full, so memory stays bounded


class Impression(msgspec.Struct, kw_only=True, gc=False):
    """An impression as the impressions path keeps it: the wire fields, typed as :class:`Event`'s wire form is
    (so the same records decode), ``timestamp`` normalised to float epoch seconds once checked, ``item_ids`` the
    items shown. Never tracked by the cycle collector (it holds strings, numbers and tuples only)."""

    event_id: _NonEmpty
    user_id: _NonEmpty
    event_type: _NonEmpty
    timestamp: str | float
    item_ids: tuple[_NonEmpty, ...] | None = None
    item_id: _NonEmpty | msgspec.UnsetType = msgspec.UNSET
    weight: float | None = None
    session_id: str | None = None
    context: Context | msgspec.UnsetType = msgspec.UNSET  # checked as the wire form checks it, never kept
    schema: int = SCHEMA_VERSION


_DECODE = msgspec.json.Decoder(Impression).decode


class ImpressionDecoder:
    """Decodes one poll's records: :meth:`decode`."""

    def __init__(self, rules: EventRules) -> None:
        self.rules = rules
        bounds = rules.bounds
        self._max_bytes, self._max_depth = rules.max_bytes, bounds.max_json_depth
        self._max_items, self._max_id_chars = bounds.max_impression_items, bounds.max_id_chars
        self._max_weight, self._min_s = bounds.max_weight, bounds.min_timestamp_s
        self._tolerance_s = rules.future_tolerance_s
        self._id_match = bounds.id_regex.fullmatch
        self._good_ids: dict[str, None] = {}

    def decode(
        self, values: Sequence[bytes], appended_s: Sequence[float]
    ) -> tuple[list[Impression | Event | None], list[str | None]]:
        """Per record (``values``, appended at ``appended_s`` epoch seconds: "too far in the future" is judged
        against it): the event (an :class:`Impression`, or an :class:`Event` parsed whole) or None, and the
        reason it is refused, or None."""
        events: list[Impression | Event | None] = []
        reasons: list[str | None] = []
        quick = self._quick
        for raw, now in zip(values, appended_s, strict=True):
            event = quick(raw, now)
            reason = None
            if event is None:
                try:
                    event = self.rules.parse(raw, now=now)
                except BadEvent as exc:
                    reason = exc.reason
            events.append(event)
            reasons.append(reason)
        return events, reasons

    def _quick(self, raw: bytes, now: float) -> Impression | None:
        """``raw`` as an Impression when it is one in the quick form and passes every check; None otherwise."""
        if len(raw) > self._max_bytes or raw.count(b"[") + raw.count(b"{") > self._max_depth:
            return None
        try:
            wire = _DECODE(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError):
            return None
        if not (self._fields_pass(wire) and self._ids_pass(wire)):
            return None
        seconds = self._seconds(wire.timestamp, now)
        if seconds is None:
            return None
        wire.timestamp = seconds
        return wire

    def _fields_pass(self, wire: Impression) -> bool:
        """An impression listing 1..``max_impression_items`` items (``item_id``, if given, one of them), a known
        schema, a weight in range (NaN is not)."""
        shown, weight = wire.item_ids, wire.weight
        return (
            wire.event_type == IMPRESSION
            and bool(shown)
            and len(shown) <= self._max_items  # type: ignore[arg-type]
            and 1 <= wire.schema <= SCHEMA_VERSION
            and (wire.item_id is msgspec.UNSET or wire.item_id in shown)  # type: ignore[operator]
            and (weight is None or 0 <= weight <= self._max_weight)
        )

    def _ids_pass(self, wire: Impression) -> bool:
        """Every id within ``events.max_id_chars`` and ``events.id_pattern``; the items listed once each."""
        good, valid, shown = self._good_ids, self._valid_id, wire.item_ids or ()
        if not valid(wire.event_id, False) or (wire.user_id not in good and not valid(wire.user_id, True)):
            return False
        if wire.session_id is not None and wire.session_id not in good and not valid(wire.session_id, True):
            return False
        if not all(item in good or valid(item, True) for item in shown):
            return False
        return len(shown) == 1 or len(set(shown)) == len(shown)

    def _seconds(self, ts: str | float, now: float) -> float | None:
        """``ts`` in epoch seconds when ``parse_event`` would accept it, appended at ``now``; None otherwise."""
        latest = now + self._tolerance_s
        if isinstance(ts, float) and 0 < ts < 1e11 and ts >= self._min_s:  # epoch seconds (finite: in range)
            return ts if ts <= latest else None
        try:
            return _epoch_seconds(ts, self.rules.bounds, latest, self._tolerance_s)
        except BadEvent:
            return None

    def _valid_id(self, value: str, keep: bool) -> bool:
        """Whether ``value`` passes ``events.max_id_chars`` and ``events.id_pattern``; kept as seen when ``keep``."""
        if len(value) > self._max_id_chars or self._id_match(value) is None:
            return False
        if keep:
            if len(self._good_ids) >= _GOOD_IDS_KEPT:
                self._good_ids.clear()
            self._good_ids[value] = None
        return True
