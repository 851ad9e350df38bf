"""``lake show``: what the events table holds at one version."""

from __future__ import annotations

from typing import Any

import polars as pl
from deltalake import DeltaTable

from lambdarec.lake.commits import covered_positions


def table_summary(dt: DeltaTable | None) -> dict[str, Any]:
    """Version, rows, users, items, first and last event time and log positions of the events table ``dt`` (and
    ``impressions_positions``, the impressions log's, when it has any)."""
    if dt is None:
        return {"version": None, "rows": 0, "users": 0, "items": 0, "min_ts": None, "max_ts": None, "positions": {}}
    stats = (
        pl.scan_delta(dt)
        .select(
            pl.len().alias("rows"),
            pl.col("user_id").n_unique().alias("users"),
            pl.col("item_id").n_unique().alias("items"),
            pl.col("timestamp").min().alias("min_ts"),
            pl.col("timestamp").max().alias("max_ts"),
        )
        .collect()
        .row(0, named=True)
    )
    iso = {k: (v.isoformat() if v is not None else None) for k, v in stats.items() if k.endswith("_ts")}
    shown = covered_positions(dt, None, "impressions")  # the impressions log's (log.impressions_topic), if any
    return {
        "version": dt.version(),
        "rows": int(stats["rows"]),
        "users": int(stats["users"]),
        "items": int(stats["items"]),
        **iso,
        "positions": {str(p): n for p, n in sorted(covered_positions(dt, None, "log").items())},
        **({"impressions_positions": {str(p): n for p, n in sorted(shown.items())}} if shown else {}),
    }
