"""Catalog changes travel through the event log and reach serving, on SQLite and on Kafka + Cassandra.

An upsert lands in the store and as an ``item`` event in the log; the speed layer skips it (no dead letter, no
state for the catalog's reserved user), the archiver puts it in the master dataset with the upsert as JSON, and the
nightly's lake reader leaves it out of the interactions (even with ``batch.on_bad_rows = fail``). Over HTTP, lists
leave an item made unavailable within a few polls and stay full."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from batch_layer.archive import Archiver
from batch_layer.job import run_batch
from batch_layer.lake_source import read_lake
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.catalog.events import CATALOG_USER, ITEM_EVENT
from lambdarec.catalog.ingest import ItemLimits, upsert_items
from lambdarec.eventlog import open_log
from lambdarec.lake import Lake, open_lake
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.app import create_app
from serving_layer.auth import hash_key
from speed_layer.consumer import SpeedConsumer
from tests.cassandra import throwaway_keyspace
from tests.integration.raw_log import append_raw

KEY = secrets.token_urlsafe(16)
POLL_S = 0.3


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    s: dict = {
        "lake": {"url": str(tmp_path / "lake")},
        "archive": {"max_batch_s": 0.5},
        "batch": {"on_bad_rows": "fail", "lookback_days": None},
    }
    with contextlib.ExitStack() as stack:
        if request.param == "embedded":
            s |= {"store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/events"}}
        else:
            chost, cport = request.getfixturevalue("cassandra_endpoint")
            khost, kport = request.getfixturevalue("kafka_endpoint")
            topic = f"catalog-{secrets.token_hex(4)}"
            s["store"] = {"url": stack.enter_context(throwaway_keyspace((chost, cport), "lambdarec_catalog"))}
            s["log"] = {"url": f"kafka://{khost}:{kport}/{topic}", "dead_letter": f"{topic}-dlq"}
            s["archive"]["consumer_group"] = f"{topic}-archive"
        yield Settings.load(overrides=s)


def test_a_change_reaches_the_store_and_the_lake_and_is_no_interaction(settings: Settings) -> None:
    now = time.time()
    with open_store(settings) as store, open_log(settings) as log:
        store.init_schema()
        log.ensure_topic()
        objects = [
            {"item_id": "i1", "available": False},
            {"item_id": "i2", "categories": ["shoes"], "attributes": {"brand": "acme", "price": 40}},
            {"item_id": "bad", "available": "yes"},
        ]
        report = upsert_items(store, log, objects, ItemLimits(), now_s=now)
        assert (report.accepted, report.rejected) == (2, 1)
        assert report.rejections[0][0] == 2 and "available" in report.rejections[0][1]
        assert store.read_catalog(["i1"])["i1"].available is False
    click = {"event_id": "c1", "user_id": "u1", "item_id": "i2", "event_type": "click", "timestamp": now}
    append_raw(settings, [json.dumps(click).encode()])

    with SpeedConsumer(settings) as consumer:
        stats = consumer.run(until_idle_s=2.0).to_json()
    assert (stats["processed"], stats["dead_lettered"]) == (1, 0)
    with open_store(settings) as store:
        assert set(store.read_fresh_users(["u1", CATALOG_USER])) == {"u1"}

    with Archiver(settings) as archiver:
        archiver.run(until_idle_s=1.0)
    lake = Lake(settings.lake)
    rows = lake.scan().filter(pl.col("event_type") == ITEM_EVENT).sort("item_id").collect()
    assert rows["item_id"].to_list() == ["i1", "i2"]
    assert set(rows["user_id"].to_list()) == {CATALOG_USER}
    change = json.loads(json.loads(rows["context"][1])[ITEM_EVENT])
    assert change == {"item_id": "i2", "categories": ["shoes"], "attributes": {"brand": "acme", "price": 40}}

    opened = open_lake(settings)
    frame, report = read_lake(opened, opened.version(), settings.batch, as_of=None)
    assert frame["item_id"].to_list() == ["i2"] and frame["user_id"].to_list() == ["u1"]
    assert report.bad_rows == {}


def test_serving_applies_an_upsert_within_the_poll(settings: Settings, tmp_path: Path) -> None:
    """Over HTTP on the same backends: POST /v1/items, and the next lists leave the item out and stay full."""
    log_file = tmp_path / "log.parquet"
    synthesize(SynthSpec(users=200, items=120, events=8000, seed=4)).events.write_parquet(log_file)
    overrides = {
        "batch": {"top_k": 30, "train": {"iterations": 3, "factors": 8}, "on_bad_rows": "fail", "lookback_days": None},
        "serving": {"ingest_key_hashes": [hash_key(KEY)], "catalog_poll_s": POLL_S, "snapshot_poll_s": 0.2,
                    "store_timeout_ms": 2000},
    }  # fmt: skip
    s = Settings.load(overrides={**settings.model_dump(mode="json", exclude={"batch", "serving"}), **overrides})
    with open_store(s) as store:
        store.init_schema()
    run_batch(s, interactions=str(log_file), as_of=datetime(2024, 2, 1, tzinfo=UTC), force=True, progress=False)
    with TestClient(create_app(s)) as client:
        service = client.app.state.service
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
        user = "u3"
        before = [
            i["item_id"] for i in client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()["items"]
        ]
        gone = before[:3]
        posted = client.post("/v1/items", json=[{"item_id": i, "available": False} for i in gone],
                             headers={"X-API-Key": KEY})  # fmt: skip
        assert posted.status_code == 200 and posted.json()["accepted"] == 3, posted.text
        assert client.get(f"/v1/items/{gone[0]}").json()["available"] is False
        posted_at = time.monotonic()
        while True:
            after = [
                i["item_id"] for i in client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()["items"]
            ]
            if not set(after) & set(gone) or time.monotonic() - posted_at > 10 * POLL_S:
                break
            time.sleep(0.05)
        assert not set(after) & set(gone) and len(after) == 10
        assert time.monotonic() - posted_at < 10 * POLL_S  # within a few polls (the store's read included)
        assert after[:7] == before[3:10]
        assert service.catalog.loaded
