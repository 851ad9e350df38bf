"""The erasures table: which users were erased, when, and where the log ended then (their earlier events are
never archived). Rows are appended by ``Lake.record_erasure`` and read by ``Lake.erasures``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lambdarec.lake.schema import ERASURES_SCHEMA


@dataclass(frozen=True)
class Erasure:
    """An erased user: when, and the log's end offsets then (their earlier events are never archived)."""

    user_id: str
    erased_at: float
    log_end: dict[int, int]

    def covers(self, partition: int | None, offset: int | None, ingested_at: float | None = None) -> bool:
        """Whether an event at this log position (or, imported, ingested then) predates the erasure."""
        if partition is None or offset is None:
            return ingested_at is None or ingested_at <= self.erased_at
        return offset < self.log_end.get(partition, 0)


def erasure_rows(user_ids: Iterable[str], log_end: Mapping[int, int]) -> pa.Table:
    """The rows that record ``user_ids`` erased now, when the log ended at ``log_end``."""
    users = sorted(set(user_ids))
    now_us = round(time.time() * 1_000_000)
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "erased_at": pa.array([now_us] * len(users), ERASURES_SCHEMA.field("erased_at").type),
            "log_end": pa.array([json.dumps({str(p): n for p, n in log_end.items()})] * len(users), pa.string()),
        },
        schema=ERASURES_SCHEMA,
    )


def read_erasures(dt: DeltaTable) -> dict[str, Erasure]:
    """The erased users in the erasures table ``dt``, the latest erasure of each."""
    out: dict[str, Erasure] = {}
    for row in pl.scan_delta(dt).sort("erased_at").collect().iter_rows(named=True):
        out[row["user_id"]] = Erasure(
            row["user_id"],
            row["erased_at"].replace(tzinfo=UTC).timestamp(),
            {int(p): int(n) for p, n in json.loads(row["log_end"]).items()},
        )
    return out


def user_filter(user_ids: Iterable[str]) -> str:
    """A Delta predicate matching the rows of ``user_ids``."""
    return "user_id IN (" + ", ".join("'" + v.replace("'", "''") + "'" for v in user_ids) + ")"
