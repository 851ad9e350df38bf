"""The lake's tables and their Arrow schemas: events, dead letters, erasures.

The events table holds the event schema (:class:`lambdarec.events.Event`) plus where each event came from:
``log_partition`` and ``log_offset`` (null for imported history), ``ingested_at`` (when it was archived) and
``source`` (``log`` or ``import:<file name>``). It is partitioned by ``event_date``, the UTC date of the event
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
from datetime import UTC, datetime

import pyarrow as pa

from lambdarec.events import Event

SOURCE_LOG = "log"
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


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def event_rows(events: Sequence[tuple[Event, Position | None]], *, source: str, ingested_at: float) -> pa.Table:
    """The events table rows of ``events``, each with its log position (None for an import)."""
    at = _utc(ingested_at)
    cols: dict[str, list] = {f.name: [] for f in EVENTS_SCHEMA}
    for event, pos in events:
        when = _utc(event.timestamp)
        cols["event_id"].append(event.event_id)
        cols["user_id"].append(event.user_id)
        cols["item_id"].append(event.item_id)
        cols["event_type"].append(event.event_type)
        cols["timestamp"].append(when)
        cols["weight"].append(event.weight)
        cols["session_id"].append(event.session_id)
        cols["context"].append(json.dumps(event.context, sort_keys=True) if event.context else None)
        cols["schema"].append(event.schema)
        cols["log_partition"].append(None if pos is None else pos[0])
        cols["log_offset"].append(None if pos is None else pos[1])
        cols["ingested_at"].append(at)
        cols["source"].append(source)
        cols["event_date"].append(when.date())
    return pa.table(cols, schema=EVENTS_SCHEMA)


def dead_letter_rows(
    letters: Sequence[tuple[bytes, str, Position | None]], *, source: str, ingested_at: float
) -> pa.Table:
    """Dead-letter rows: each refused record's original bytes, the reason, and its log position."""
    at = _utc(ingested_at)
    return pa.table(
        {
            "value": [v for v, _, _ in letters],
            "reason": [r for _, r, _ in letters],
            "log_partition": [None if p is None else p[0] for _, _, p in letters],
            "log_offset": [None if p is None else p[1] for _, _, p in letters],
            "source": [source] * len(letters),
            "ingested_at": [at] * len(letters),
        },
        schema=DEAD_LETTERS_SCHEMA,
    )
