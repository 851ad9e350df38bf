"""Event-id claims by scope: a repeated ``event_id`` (a client's resend, another record) is applied once.

With ``events.dedup = "auto"`` (the default) the events scope is claimed here only while claims of an earlier
release may be live; then the users' states hold the ids (:mod:`speed_layer.seen`). Impressions are always
claimed here.

Impressions are claimed apart from every other event (``ClaimScope``): the impressions consumer claims ten times
the click volume, and claims in the positive-event consumer's file or partitions would make that path wait on
them. The scope follows the event's type, not the consumer, so one consumer applying every event
(``speed.feedback.own_consumer`` off) claims an impression where the impressions consumer would.

Example
-------
>>> kept, repeats = first_claims(store, good, window_s=86400)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable

from lambdarec.events import IMPRESSION, Event
from lambdarec.logs import get_logger
from lambdarec.store import OnlineStore
from lambdarec.store.coordination import ClaimScope
from speed_layer.state import Position

log = get_logger(__name__)


def scope_of(event: Event) -> ClaimScope:
    return "impressions" if event.event_type == IMPRESSION else "events"


def _by_scope(pairs: Iterable[tuple[Event, Position]]) -> dict[ClaimScope, dict[str, Position]]:
    """Each scope's ids and the position of the first record carrying each."""
    out: dict[ClaimScope, dict[str, Position]] = {}
    for event, pos in pairs:
        out.setdefault(scope_of(event), {}).setdefault(event.event_id, pos)
    return out


def first_claims(
    store: OnlineStore, good: list[tuple[Event, Position]], window_s: float
) -> tuple[list[tuple[Event, Position]], set[Position]]:
    """``good`` less repeats: events whose ``event_id`` a record at another log position carried first within
    ``window_s`` (in the event's scope). The claims live in the store, so restarts and other consumers agree."""
    if window_s <= 0 or not good:
        return good, set()
    owners = store.claim_event_ids_scoped(_by_scope(good), window_s)
    kept = [(event, pos) for event, pos in good if owners[scope_of(event)].get(event.event_id) == pos]
    repeats = {pos for event, pos in good if owners[scope_of(event)].get(event.event_id) != pos}
    if repeats:
        log.info("speed.repeated_event_ids", skipped=len(repeats))
    return kept, repeats


def release(store: OnlineStore, pairs: Iterable[tuple[Event, Position]]) -> None:
    """Drop the claims of ``pairs`` (dead-lettered after their claim: a corrected resend may be applied)."""
    for scope, ids in _by_scope(pairs).items():
        store.release_event_ids(ids, scope)
