"""``lambdarec experiments report``: per-arm results of one experiment, read from the master dataset.

Events are attributed to the arm they were served under by their ``context`` (``experiment`` and ``arm``, which
serving stamps on the impressions it writes and callers send back on their clicks and conversions). Per arm:
users, lists and items shown (impressions), clicks, conversions, CTR and conversion rate with confidence
intervals, and the relative lift over control with a two-sided test (:mod:`lambdarec.experiments.stats`), plus
the sample-ratio-mismatch check on the users and the daily series the HTML page plots.

Example
-------
>>> doc = experiment_report(settings, "home-v2", since_s=None)           # doctest: +SKIP
>>> doc["arms"][1]["lift"]["ctr"]["ci"]
[0.08, 0.31]
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from lambdarec.events import IMPRESSION
from lambdarec.experiments.stats import lift, proportion, ratio_rate, sample_ratio
from lambdarec.lake import Lake, LakeEmptyError, open_lake
from lambdarec.settings import ExperimentSettings, Settings

KINDS = ("impression", "click", "conversion")


def arm_events(
    lake: Lake, name: str, exp: ExperimentSettings, since_s: float | None, version: int | None = None
) -> pl.DataFrame:
    """The experiment's attributed events: ``user_id``, ``arm``, ``kind`` (impression, click, conversion),
    ``shown`` (items an impression showed), ``day`` (UTC date of the event time)."""
    frame = lake.scan(version)
    kind = (
        pl.when(pl.col("event_type") == IMPRESSION)
        .then(pl.lit("impression"))
        .when(pl.col("event_type").is_in(exp.click_types))
        .then(pl.lit("click"))
        .when(pl.col("event_type").is_in(exp.conversion_types))
        .then(pl.lit("conversion"))
    )
    shown = pl.col("item_ids").list.len() if "item_ids" in frame.collect_schema() else pl.lit(None, pl.UInt32)
    wanted = [IMPRESSION, *exp.click_types, *exp.conversion_types]
    frame = frame.filter(pl.col("event_type").is_in(wanted) & pl.col("context").is_not_null())
    if since_s is not None:
        frame = frame.filter(pl.col("timestamp") >= datetime.fromtimestamp(since_s, UTC))
    return (
        frame.select(
            "user_id",
            pl.col("context").str.json_path_match("$.experiment").alias("experiment"),
            pl.col("context").str.json_path_match("$.arm").alias("arm"),
            kind.alias("kind"),
            shown.fill_null(1).cast(pl.Int64).alias("shown"),
            pl.col("timestamp").dt.date().alias("day"),
        )
        .filter((pl.col("experiment") == name) & pl.col("arm").is_not_null())
        .drop("experiment")
        .collect()
    )


def per_user(events: pl.DataFrame) -> pl.DataFrame:
    """One row per (arm, user): items shown, lists shown, clicks, conversions."""
    return events.group_by("arm", "user_id").agg(
        pl.col("shown").filter(pl.col("kind") == "impression").sum().alias("shown"),
        (pl.col("kind") == "impression").sum().alias("lists"),
        (pl.col("kind") == "click").sum().alias("clicks"),
        (pl.col("kind") == "conversion").sum().alias("conversions"),
    )


def experiment_report(
    settings: Settings,
    name: str,
    since_s: float | None = None,
    confidence: float = 0.95,
    lake: Lake | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """The report of experiment ``name`` as plain data (what ``--json`` prints and the HTML page shows).

    Raises ``KeyError`` for an experiment not in the settings and ``LakeEmptyError`` for a lake with no table.
    """
    exp = settings.experiments[name]
    lake = lake if lake is not None else open_lake(settings)
    pinned = lake.version() if version is None else version
    if pinned is None:
        raise LakeEmptyError(f"the lake at {lake.uri()} has no events table yet: nothing to report")
    events = arm_events(lake, name, exp, since_s, pinned)
    users = per_user(events)
    control = exp.control_arm
    shares = {arm.name: arm.share for arm in exp.arms}
    arms = {arm: _arm_summary(users.filter(pl.col("arm") == arm), confidence) for arm in shares}
    for arm, summary in arms.items():
        if arm != control:
            summary["lift"] = {
                metric: lift(summary.pop(f"_{metric}"), arms[control][f"_{metric}"], confidence).to_dict()
                for metric in ("ctr", "conversion_rate")
            }
    for summary in arms.values():  # control's own rates were kept for the lifts above
        summary.pop("_ctr", None)
        summary.pop("_conversion_rate", None)
    unknown = sorted(set(users["arm"].unique().to_list()) - set(shares))
    several = users.group_by("user_id").agg(pl.col("arm").n_unique().alias("n")).filter(pl.col("n") > 1).height
    return {
        "experiment": name,
        "lake_version": pinned,
        "since": datetime.fromtimestamp(since_s, UTC).isoformat() if since_s is not None else None,
        "confidence": confidence,
        "control": control,
        "arms": [{"arm": arm, "share": shares[arm], **summary} for arm, summary in arms.items()],
        "srm": sample_ratio({a: s["users"] for a, s in arms.items()}, shares).to_dict(),
        "unknown_arms": unknown,
        "users_in_several_arms": several,
        "daily": _daily(events),
    }


def _arm_summary(users: pl.DataFrame, confidence: float) -> dict[str, Any]:
    shown = users["shown"].to_numpy().astype(np.float64)
    clicks = users["clicks"].to_numpy().astype(np.float64)
    converted = int((users["conversions"] > 0).sum())
    ctr = ratio_rate(clicks, shown, confidence)
    conversion = proportion(converted, users.height, confidence)
    return {
        "users": users.height,
        "lists": int(users["lists"].sum()),
        "impressions": int(shown.sum()),
        "clicks": int(clicks.sum()),
        "conversions": int(users["conversions"].sum()),
        "converted_users": converted,
        "ctr": ctr.to_dict(),
        "conversion_rate": conversion.to_dict(),
        "_ctr": ctr,
        "_conversion_rate": conversion,
    }


def _daily(events: pl.DataFrame) -> list[dict[str, Any]]:
    """Per UTC day and arm: users, items shown, clicks, converting users; CTR and conversion rate."""
    if events.is_empty():
        return []
    days = (
        events.group_by("day", "arm")
        .agg(
            pl.col("user_id").n_unique().alias("users"),
            pl.col("shown").filter(pl.col("kind") == "impression").sum().alias("impressions"),
            (pl.col("kind") == "click").sum().alias("clicks"),
            pl.col("user_id").filter(pl.col("kind") == "conversion").n_unique().alias("converted_users"),
        )
        .sort("day", "arm")
    )
    return [
        {
            "date": row["day"].isoformat(),
            "arm": row["arm"],
            "users": row["users"],
            "impressions": row["impressions"],
            "clicks": row["clicks"],
            "converted_users": row["converted_users"],
            "ctr": row["clicks"] / row["impressions"] if row["impressions"] else None,
            "conversion_rate": row["converted_users"] / row["users"] if row["users"] else None,
        }
        for row in days.iter_rows(named=True)
    ]
