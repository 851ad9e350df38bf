"""Catalog changes as events in the event log, so the archiver puts the catalog's history in the master dataset.

A change is an event of the reserved type ``item`` from the reserved user ``lambdarec:catalog``, at the time of
the upsert: its ``item_id`` is the item's and its ``context`` holds, under ``item``, the upsert as JSON text (the
fields it set; the fields it left out kept their values). The lake keeps it as any event (``context`` is JSON text
there too), so a nightly can rebuild the catalog as of any time by applying an item's changes in log order.
The speed layer skips these events and the batch layer's reader leaves them out: they are not interactions.

Example
-------
>>> event = change_event(ItemPatch(item_id="i7", available=False), now_s=1764460800.0)
>>> change_of(event).available
False
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TypeVar

import msgspec

from lambdarec.catalog.item import ItemPatch
from lambdarec.events import Event, EventRules

ITEM_EVENT = "item"
CATALOG_USER = "lambdarec:catalog"  # no real user shares it by chance; forget never names it
Position = TypeVar("Position")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ItemPatch).decode


def change_event(patch: ItemPatch, now_s: float) -> Event:
    """The event that records ``patch`` in the log (a fresh ``event_id``: two equal upserts are two changes)."""
    return Event(
        event_id=f"item-{uuid.uuid4().hex}",
        user_id=CATALOG_USER,
        item_id=patch.item_id,
        event_type=ITEM_EVENT,
        timestamp=now_s,
        context={ITEM_EVENT: _encode(patch).decode()},
    )


def is_change(event: Event) -> bool:
    return event.event_type == ITEM_EVENT


def change_of(event: Event) -> ItemPatch:
    """The upsert an ``item`` event records; ``msgspec.ValidationError`` when its context does not hold one."""
    return _decode(str(event.context.get(ITEM_EVENT, "")))


def with_changes(rules: EventRules) -> EventRules:
    """``rules`` that also accept ``item`` events: for the consumers of the log (archiver, speed layer). Producers
    keep the plain rules, so only ``POST /v1/items`` and ``lambdarec items import`` write catalog changes."""
    if rules.known_types is None or ITEM_EVENT in rules.known_types:
        return rules
    return dataclasses.replace(rules, known_types=rules.known_types | {ITEM_EVENT})


def interactions(events: list[tuple[Event, Position]]) -> list[tuple[Event, Position]]:
    """``events`` without catalog changes: what the speed layer applies."""
    return [(e, p) for e, p in events if e.event_type != ITEM_EVENT]
