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

IMPRESSIONS_KEY = "impressions"  # in ``log_end``: the impressions log's end offsets
Ends = Mapping[int, int] | None  # a log's end offsets, if it exists
Pos = dict[int, int]  # per log partition, an offset


@dataclass(frozen=True)
class Erasure:
    """An erased user: when, and the log's end offsets then (their earlier events are never archived)."""

    user_id: str
    erased_at: float
    log_end: dict[int, int]
    impressions_end: dict[int, int] | None = None  # the impressions log's (``log.impressions_topic``), if any then

    def covers(
        self, partition: int | None, offset: int | None, ingested_at: float | None = None, impressions: bool = False
    ) -> bool:
        """Whether an event at this log position (or, imported, ingested then) predates the erasure;
        ``impressions``: a position in the impressions log (before it existed, judged by ``ingested_at``)."""
        ends = self.impressions_end if impressions else self.log_end
        if partition is None or offset is None or ends is None:
            return ingested_at is None or ingested_at <= self.erased_at
        return offset < ends.get(partition, 0)


def erasure_rows(user_ids: Iterable[str], log_end: Mapping[int, int], impressions_end: Ends = None) -> pa.Table:
    """The rows that record ``user_ids`` erased now, when the log ended at ``log_end`` (and the impressions log
    at ``impressions_end``, kept in the same JSON under ``"impressions"``)."""
    users = sorted(set(user_ids))
    ends: dict[str, object] = {str(p): n for p, n in log_end.items()}
    if impressions_end is not None:
        ends[IMPRESSIONS_KEY] = {str(p): n for p, n in impressions_end.items()}
    now_us = round(time.time() * 1_000_000)
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "erased_at": pa.array([now_us] * len(users), ERASURES_SCHEMA.field("erased_at").type),
            "log_end": pa.array([json.dumps(ends)] * len(users), pa.string()),
        },
        schema=ERASURES_SCHEMA,
    )


def read_erasures(dt: DeltaTable) -> dict[str, Erasure]:
    """The erased users in the erasures table ``dt``, the latest erasure of each."""
    out: dict[str, Erasure] = {}
    for row in pl.scan_delta(dt).sort("erased_at").collect().iter_rows(named=True):
        ends = json.loads(row["log_end"])
        shown = ends.pop(IMPRESSIONS_KEY, None)
        out[row["user_id"]] = Erasure(
            row["user_id"],
            row["erased_at"].replace(tzinfo=UTC).timestamp(),
            {int(p): int(n) for p, n in ends.items()},
            None if shown is None else {int(p): int(n) for p, n in shown.items()},
        )
    return out


def user_filter(user_ids: Iterable[str]) -> str:
    """A Delta predicate matching the rows of ``user_ids``."""
    return "user_id IN (" + ", ".join("'" + v.replace("'", "''") + "'" for v in user_ids) + ")"
