"""Impressions stamped by serving: when a request asks (``impressions=true``), the items it returns are written
to the event log as one ``impression`` event, attributed to the experiment arm the list was served under.

The event's ``user_id`` is the user (or, for an anonymous list, its ``session_id``), ``item_ids`` the items in
the order shown, and ``context`` holds ``experiment``, ``arm`` and ``snapshot``. Its ``event_id`` is returned in
the body as ``impression_id``. When the log cannot take it, the list is still served, with ``impression_id``
null, and the failure is logged (``serving.impression_not_written``): a recommendation never fails for its
impression.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec

from lambdarec.eventlog import EventLogError, SendInterruptedError, send_events
from lambdarec.events import IMPRESSION
from lambdarec.logs import get_logger
from serving_layer.recommend import RecommendQuery
from serving_layer.service import Service

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode


def impression_event(query: RecommendQuery, snapshot: str, item_ids: list[str], now_s: float) -> dict[str, object]:
    """The impression event of one served list (wire form)."""
    context: dict[str, str] = {"snapshot": snapshot}
    if query.experiment is not None and query.arm is not None:
        context |= {"experiment": query.experiment, "arm": query.arm}
    return {
        "event_id": f"imp-{uuid.uuid4().hex}",
        "user_id": query.user_id or query.session_id,
        "event_type": IMPRESSION,
        "item_ids": item_ids,
        "timestamp": now_s,
        "session_id": query.session_id,
        "context": context,
    }


async def stamp(service: Service, query: RecommendQuery, snapshot: str, item_ids: list[str]) -> str | None:
    """Write the list's impression event; its ``event_id``, or None when nothing was written (not asked, an
    empty list, an anonymous list without ``session_id``, or the log unavailable)."""
    if not query.impressions or not item_ids or not (query.user_id or query.session_id):
        return None
    shown = item_ids[: service.rules.bounds.max_impression_items]
    event = impression_event(query, snapshot, shown, time.time())

    def append() -> bool:
        result = send_events(service.event_log(), [_encode(event)], service.rules, batch=1)
        return result.accepted == 1

    try:
        written = await asyncio.to_thread(append)
    except (SendInterruptedError, EventLogError) as exc:
        log.warning("serving.impression_not_written", user_id=event["user_id"], reason=f"{type(exc).__name__}: {exc}")
        return None
    if not written:
        log.warning("serving.impression_not_written", user_id=event["user_id"], reason="refused by validation")
        return None
    if query.experiment is not None and query.arm is not None:
        service.arms.metrics.impressions.labels(query.experiment, query.arm).inc(len(shown))
    return str(event["event_id"])
