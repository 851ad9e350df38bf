"""Records from the log decoded into events, each bad one isolated with the reason it goes to the dead-letter log."""

from __future__ import annotations

from lambdarec.eventlog.base import Record
from lambdarec.events import BadEvent, Event, EventRules
from lambdarec.logs import get_logger
from speed_layer.apply import describe
from speed_layer.state import Position

log = get_logger(__name__)


def decode(rules: EventRules, records: list[Record]) -> tuple[list[tuple[Event, Position]], list[tuple[Record, str]]]:
    """Decode every record: (good events with their positions, bad records with the reason)."""
    good, bad = [], []
    for r in records:
        try:
            # "Too far in the future" is judged against when the record was appended: deterministic on replay.
            event = rules.parse(r.value, now=r.timestamp_ms / 1000.0)
        except BadEvent as exc:
            bad.append((r, exc.reason))
            continue
        except MemoryError:
            raise
        except Exception as exc:  # a decoder bug must not stop the consumer: isolate the record
            bad.append((r, f"could not be decoded: {describe(exc)}"))
            log.exception("speed.decode_failed", partition=r.partition, offset=r.offset)
            continue
        good.append((event, (r.partition, r.offset)))
    return good, bad
