"""Upserting items: validate each object, append the good ones to the event log as catalog changes, then write
them to the store. ``POST /v1/items`` and ``lambdarec items import`` both call :func:`upsert_items`, so a producer
gets the same per-item report whichever way it sends.

The log is written first: a change the store holds is always in the master dataset. An upsert is idempotent
(the same object gives the same item), so whatever failed, sending the same objects again is safe.

Example
-------
>>> report = upsert_items(store, log, [{"item_id": "i7", "available": False}], limits)   # doctest: +SKIP
>>> report.accepted
1
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lambdarec.catalog.events import change_event
from lambdarec.catalog.item import BadItem, ItemBounds, ItemPatch, parse_item
from lambdarec.eventlog import EventLog
from lambdarec.events import EventBounds, encode_event

if TYPE_CHECKING:
    from lambdarec.settings import Settings

MAX_REPORTED = 1000  # rejections reported with their reason; more are only counted


class ItemStore(Protocol):
    """Where upserts are written: the store's catalog table (``lambdarec.store.catalog.CatalogTable``)."""

    def upsert_items(self, patches: Sequence[ItemPatch], now_s: float) -> int: ...


@dataclass(frozen=True)
class ItemLimits:
    """Bounds on item objects and on their change events (``log.max_event_bytes``)."""

    bounds: ItemBounds = field(default_factory=ItemBounds)
    max_event_bytes: int = 16384

    @classmethod
    def from_settings(cls, settings: Settings) -> ItemLimits:
        """From ``serving.catalog``, the id rules of ``events`` and ``log.max_event_bytes``."""
        c = settings.serving.catalog
        bounds = ItemBounds(c.max_categories, c.max_attributes, c.max_value_chars, EventBounds.from_settings(settings))
        return cls(bounds, settings.log.max_event_bytes)


@dataclass
class UpsertReport:
    """How many items were upserted, how many refused, and why (the first ``MAX_REPORTED``)."""

    accepted: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def refuse(self, index: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REPORTED:
            self.rejections.append((index, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejections": [{"index": i, "reason": r} for i, r in self.rejections],
        }


def validate_items(objects: Sequence[Any], limits: ItemLimits, report: UpsertReport, first: int = 0) -> list[ItemPatch]:
    """The valid upserts among ``objects``; each invalid one is refused in ``report`` with its index (+``first``)."""
    good = []
    for i, obj in enumerate(objects):
        try:
            patch = parse_item(obj, limits.bounds)
            size = len(encode_event(change_event(patch, 0.0)))
            if size > limits.max_event_bytes:
                raise BadItem(
                    f"item is {size} bytes as a change event > limit {limits.max_event_bytes} (log.max_event_bytes)"
                )
        except BadItem as exc:
            report.refuse(first + i, exc.reason)
            continue
        good.append(patch)
    return good


def upsert_items(
    store: ItemStore,
    event_log: EventLog,
    objects: Sequence[Any],
    limits: ItemLimits,
    *,
    report: UpsertReport | None = None,
    first: int = 0,
    now_s: float | None = None,
) -> UpsertReport:
    """Validate ``objects`` (decoded JSON) and upsert the valid ones: change events appended to ``event_log``,
    then the items written to ``store``. Log and store errors propagate (nothing of this call reached the store
    when the log failed). ``first`` numbers the objects in the report (their position in a file or body)."""
    report = report or UpsertReport()
    patches = validate_items(objects, limits, report, first)
    if patches:
        now = time.time() if now_s is None else now_s
        event_log.append([change_event(p, now) for p in patches], keys=[p.item_id for p in patches])
        report.accepted += store.upsert_items(patches, now)
    return report
