"""Demo step 6: the posted events reach the model. The archiver has put them into the lake; a second nightly
reads the lake (as of now, over the whole lake), its interaction count grows by exactly the log's events in the
lake, and serving flips to it while the user's list keeps reflecting what they did.

Example
-------
>>> loop = close_the_loop(settings, api, console, archived=..., user="u1", first=..., before=..., run_batch=f)
>>> loop["grew_by"] == loop["log_events_in_lake"]                                # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from demo import console as show
from demo.live import Api
from lambdarec.lake import SOURCE_LOG, open_lake
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import open_store

FLIP_TIMEOUT_S = 60.0


def close_the_loop(
    settings: Settings,
    api: Api,
    console: Any,
    *,
    archived: dict[str, Any],
    user: str | None,
    first: dict[str, Any],
    before: dict[str, Any] | None,
    run_batch: Callable[..., Any],
) -> dict[str, Any]:
    """Run the second nightly on the lake, wait for the flip, and report what changed (see the module docstring)."""
    lake = open_lake(settings)
    show.note(
        console,
        f"archiver: {archived['archived']} events into the lake (version {archived['lake_version']}), "
        f"positions {archived['positions']}",
    )
    from_log = lake.scan().filter(pl.col("source") == SOURCE_LOG).select(pl.len()).collect().item()
    whole = settings.model_copy(update={"batch": settings.batch.model_copy(update={"lookback_days": None})})
    result = run_batch(force=True, as_of=datetime.now(UTC), settings=whole)
    m = result.manifest
    before_n, after_n = first.get("counts", {}).get("interactions", 0), m["counts"]["interactions"]
    show.note(
        console,
        f"second nightly: lake version {m['lake_version']}, log positions {m['log_positions']}; interactions "
        f"{before_n:,} -> {after_n:,} (+{after_n - before_n}; events from the log in the lake: {from_log})",
    )
    out: dict[str, Any] = {
        "archived": archived,
        "version": m["version"],
        "lake_version": m["lake_version"],
        "log_positions": m["log_positions"],
        "interactions_before": before_n,
        "interactions_after": after_n,
        "grew_by": after_n - before_n,
        "log_events_in_lake": from_log,
    }
    ok = after_n - before_n == from_log
    if user is not None:
        out |= _flip(settings, api, console, user, m["version"], before)
        ok = ok and out["flipped"] and out["burst_in_history"]
    out["ok"] = ok
    return out


def _flip(
    settings: Settings, api: Api, console: Any, user: str, version: str, before: dict[str, Any] | None
) -> dict[str, Any]:
    """Wait until serving ranks with ``version``; the user's list then, and whether the new history has the burst."""
    deadline = time.monotonic() + FLIP_TIMEOUT_S
    with console.status("waiting for serving to flip to the new snapshot"):
        while (after := api.recommendations(user))["snapshot"] != version and time.monotonic() < deadline:
            time.sleep(0.25)
    flipped = after["snapshot"] == version
    show.rec_table(console, after, f"{user} after the flip: the burst is in the batch history now")
    with open_store(settings) as store:
        model = SnapshotModel.load(store, version)
        row = store.read_user(version, user)
    history = {str(model.item_ids[i]) for i in row.history.tolist()} if row is not None else set()
    burst = {i["item_id"] for i in (before or {}).get("items", []) if i.get("source") == "speed"}
    posted = set(_posted_items(settings, user))
    kept = [
        i["item_id"]
        for i in after["items"]
        if i["item_id"] in {x["item_id"] for x in (before or {"items": []})["items"]}
    ]
    show.note(
        console,
        f"{len(posted & history)} of the {len(posted)} items posted are in {user}'s batch history; "
        f"{len(kept)} of the list's items stayed through the flip",
    )
    return {
        "flipped": flipped,
        "after_flip": after,
        "burst_in_history": bool(posted) and posted <= history,
        "kept_through_flip": kept,
        "speed_items_before": sorted(burst),
    }


def _posted_items(settings: Settings, user: str) -> list[str]:
    frame = open_lake(settings).scan().filter((pl.col("user_id") == user) & (pl.col("source") == SOURCE_LOG))
    return frame.select("item_id").unique().collect()["item_id"].to_list()
