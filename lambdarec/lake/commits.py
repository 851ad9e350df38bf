"""What a lake commit records: the log positions it covers, as Delta *application transactions* (app id
``log-p<partition>``, version = the next offset not yet archived), and what one append did (``AppendResult``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake import DeltaTable

PROBE_PARTITIONS = 1024  # log partitions looked for when a caller names none


@dataclass(frozen=True)
class AppendResult:
    """What one append did: the table version that holds it, rows written, rows the table already had."""

    version: int | None
    appended: int
    skipped: int
    positions: dict[int, int] = field(default_factory=dict)


def app_id(partition: int, prefix: str = "log") -> str:
    """The application-transaction id that records a log partition's archived position."""
    return f"{prefix}-p{partition}"


def covered_positions(dt: DeltaTable, partitions: Iterable[int] | None, prefix: str) -> dict[int, int]:
    """Per log partition (``partitions``, or the first ``PROBE_PARTITIONS``), the position ``dt`` covers."""
    wanted = range(PROBE_PARTITIONS) if partitions is None else partitions
    out = {}
    for p in wanted:
        v = dt.transaction_version(app_id(int(p), prefix))
        if v is not None:
            out[int(p)] = int(v)
    return out


def not_covered(rows: pa.Table, done: Mapping[int, int]) -> pa.Array:
    """Mask of rows whose log position the table does not cover yet."""
    if not done:
        return pa.array([True] * rows.num_rows)
    parts = rows.column("log_partition").to_pylist()
    offsets = rows.column("log_offset").to_pylist()
    return pa.array([o is None or o >= done.get(p, 0) for p, o in zip(parts, offsets, strict=True)])
