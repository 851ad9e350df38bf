"""Catalog changes travel through the event log: on SQLite and on Kafka + Cassandra, an upsert lands in the store
and as an ``item`` event in the log; the speed layer skips it (no dead letter, no state for the ``catalog`` user),
the archiver puts it in the master dataset with the upsert as JSON, and the nightly's lake reader leaves it out of
the interactions (even with ``batch.on_bad_rows = fail``)."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from batch_layer.archive import Archiver
from batch_layer.lake_source import read_lake
from lambdarec.catalog.events import CATALOG_USER, ITEM_EVENT
from lambdarec.catalog.ingest import ItemLimits, upsert_items
from lambdarec.eventlog import open_log
from lambdarec.lake import Lake, open_lake
from lambdarec.settings import Settings
from lambdarec.store import open_store
from speed_layer.consumer import SpeedConsumer
from tests.cassandra import throwaway_keyspace
from tests.integration.raw_log import append_raw


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
