"""No silent data loss in the training window: which filters dropped how much, and a warning naming the setting.

Of the events at or before the cut-off, the lookback window (``batch.lookback_days``) and the row filters
(:data:`batch_layer.parsing.REASONS`) may drop some. When one of them, or all of them together, drops more than
``batch.max_filtered_share``, the job warns: in its log, in its ``--json`` output and in the manifest
(``warnings``), each warning naming the setting to look at.

Example
-------
>>> [w["setting"] for w in data_loss_warnings(report, BatchSettings(lookback_days=365))]  # doctest: +SKIP
['batch.lookback_days']
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from batch_layer.interactions import ReadReport
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings

# reason of a dropped row -> the setting that decides it
SETTING_OF_REASON = {
    "missing_user_id": "batch.columns.user_id",
    "missing_item_id": "batch.columns.item_id",
    "missing_timestamp": "batch.columns.timestamp",
    "unparsable_timestamp": "batch.timestamp_unit / batch.columns.timestamp",
    "non_numeric_weight": "batch.columns.weight",
    "negative_weight": "batch.columns.weight",
    "unknown_event_type": "batch.event_weights",
}


def data_loss_warnings(report: ReadReport, batch: BatchSettings) -> list[dict[str, Any]]:
    """One warning per filter that dropped more than ``batch.max_filtered_share`` of the eligible events, or
    one for all of them together when none did alone but their sum does; logged as ``batch.data_loss``."""
    eligible = report.rows_read - report.after_as_of  # events at or before the cut-off, malformed ones included
    if eligible <= 0:
        return []
    limit = batch.max_filtered_share
    drops = {"lookback": report.before_window, **report.bad_rows}
    out = []
    for cause, dropped in drops.items():
        if dropped / eligible > limit:
            out.append(_warning(cause, dropped, eligible, report, batch))
    total = sum(drops.values())
    if not out and total / eligible > limit:
        out.append(_warning("all filters", total, eligible, report, batch, causes=drops))
    log = get_logger(__name__)
    for w in out:
        log.warning("batch.data_loss", **w)
    return out


def _warning(
    cause: str,
    dropped: int,
    eligible: int,
    report: ReadReport,
    batch: BatchSettings,
    causes: dict[str, int] | None = None,
) -> dict[str, Any]:
    share = dropped / eligible
    head = f"{dropped:,} of {eligible:,} events at or before the cut-off ({share:.0%}) were dropped"
    if cause == "lookback":
        start = datetime.fromtimestamp((report.window_start_ms or 0) / 1000, UTC).date().isoformat()
        setting = "batch.lookback_days"
        message = (
            f"{head} by batch.lookback_days = {batch.lookback_days:g}: only events from {start} on train the model; "
            "unset batch.lookback_days to use the whole log, or raise it"
        )
    elif cause == "all filters":
        named = [c for c, n in (causes or {}).items() if n]
        settings = sorted({"batch.lookback_days" if c == "lookback" else SETTING_OF_REASON.get(c, c) for c in named})
        setting = ", ".join(settings)
        message = f"{head} by {', '.join(named)}; check {setting}"
    else:
        setting = SETTING_OF_REASON.get(cause, "batch.columns")
        message = f"{head} as '{cause}'; check {setting}"
    message += f" (warning above batch.max_filtered_share = {batch.max_filtered_share:g})"
    return {
        "filter": cause,
        "setting": setting,
        "dropped": dropped,
        "eligible": eligible,
        "share": round(share, 4),
        "message": message,
    }
