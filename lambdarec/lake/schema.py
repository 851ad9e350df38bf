"""The lake's tables and their Arrow schemas: events, dead letters, erasures.

The events table holds the event schema (:class:`lambdarec.events.Event`) plus where each event came from:
``log_partition`` and ``log_offset`` (null for imported history), ``ingested_at`` (when it was archived) and
``source`` (``log`` or ``import:<file name>``). ``item_ids`` (added later, null in older rows) lists an
impression's shown items. It is partitioned by ``event_date``, the UTC date of the event
time, so a nightly window prunes whole directories.

Example
-------
>>> rows = event_rows([(event, (0, 17))], source="log", ingested_at=now)     # doctest: +SKIP
>>> rows.schema == EVENTS_SCHEMA                                              # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from lambdarec.events import Event

SOURCE_LOG = "log"
SOURCE_IMPRESSIONS = "impressions"  # the impressions log (``log.impressions_topic``): positions of its own
IMPORT_PREFIX = "import:"
PARTITION_BY = ["event_date"]
_TS = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string()),  # null only for imported history without types
        pa.field("timestamp", _TS, nullable=False),
        pa.field("weight", pa.float64()),
        pa.field("session_id", pa.string()),
        pa.field("context", pa.string()),  # the event's context object as JSON text
        pa.field("schema", pa.int32()),
        pa.field("log_partition", pa.int32()),
        pa.field("log_offset", pa.int64()),
        pa.field("ingested_at", _TS, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
        pa.field("item_ids", pa.list_(pa.string())),  # an impression's shown items; null for other types
    ]
)

DEAD_LETTERS_SCHEMA = pa.schema(
    [
        pa.field("value", pa.binary(), nullable=False),  # the record's original bytes
        pa.field("reason", pa.string(), nullable=False),
        pa.field("log_partition", pa.int32()),
        pa.field("log_offset", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("ingested_at", _TS, nullable=False),
    ]
)

ERASURES_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("erased_at", _TS, nullable=False),
        # the event log's end offsets when the erasure was recorded, as JSON {"partition": offset}: events of
        # the user before them are never archived
        pa.field("log_end", pa.string(), nullable=False),
    ]
)

Position = tuple[int, int]


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def event_rows(events: Sequence[tuple[Event, Position | None]], *, source: str, ingested_at: float) -> pa.Table:
    """The events table rows of ``events``, each with its log position (None for an import)."""
    n = len(events)
    times = [_us(e.timestamp) for e, _ in events]
    cols = {
        "event_id": pa.array([e.event_id for e, _ in events], pa.string()),
        "user_id": pa.array([e.user_id for e, _ in events], pa.string()),
        "item_id": pa.array([e.item_id for e, _ in events], pa.string()),
        "event_type": pa.array([e.event_type for e, _ in events], pa.string()),
        "timestamp": pa.array(times, _TS),
        "weight": pa.array([e.weight for e, _ in events], pa.float64()),
        "session_id": pa.array([e.session_id for e, _ in events], pa.string()),
        "context": pa.array(
            [json.dumps(e.context, sort_keys=True) if e.context else None for e, _ in events], pa.string()
        ),
        "schema": pa.array([e.schema for e, _ in events], pa.int32()),
        "log_partition": pa.array([None if p is None else p[0] for _, p in events], pa.int32()),
        "log_offset": pa.array([None if p is None else p[1] for _, p in events], pa.int64()),
        "ingested_at": pa.array([_us(ingested_at)] * n, _TS),
        "source": pa.array([source] * n, pa.string()),
        "event_date": pa.array([t // 86_400_000_000 for t in times], pa.date32()),
        "item_ids": pa.array([list(e.item_ids) if e.item_ids else None for e, _ in events], pa.list_(pa.string())),
    }
    return pa.table(cols, schema=EVENTS_SCHEMA)


def dead_letter_rows(
    letters: Sequence[tuple[bytes, str, Position | None]], *, source: str, ingested_at: float
) -> pa.Table:
    """Dead-letter rows: each refused record's original bytes, the reason, and its log position."""
    n = len(letters)
    return pa.table(
        {
            "value": pa.array([v for v, _, _ in letters], pa.binary()),
            "reason": pa.array([r for _, r, _ in letters], pa.string()),
            "log_partition": pa.array([None if p is None else p[0] for _, _, p in letters], pa.int32()),
            "log_offset": pa.array([None if p is None else p[1] for _, _, p in letters], pa.int64()),
            "source": pa.array([source] * n, pa.string()),
            "ingested_at": pa.array([_us(ingested_at)] * n, _TS),
        },
        schema=DEAD_LETTERS_SCHEMA,
    )
