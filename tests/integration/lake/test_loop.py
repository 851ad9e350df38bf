"""The whole loop, API -> log -> lake -> nightly -> flip, on embedded backends and on Kafka + Cassandra + S3.

Events posted over HTTP for a known user and a brand-new item are applied by the speed layer, archived into the
lake, read by the next nightly exactly once (a late event included: its event time is before the first
snapshot's cut-off, so an event-time rule would lose it), and the user's list reflects them before and after
the flip. Then the user is erased: no response derives from their history, and neither the lake nor the next
snapshot holds their rows.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from batch_layer.archive import Archiver
from batch_layer.archive.imports import import_file
from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.lake import open_lake
from lambdarec.model.freshstate import rebase
from lambdarec.model.snapshot import USER_IDS, SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.auth import hash_key
from speed_layer.consumer import SpeedConsumer
from tests.conftest import S3_BUCKET

INGEST_KEY, ADMIN_KEY = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
NEW_ITEM = "brand-new-item"


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    s: dict = {
        "batch": {"top_k": 30, "train": {"iterations": 4, "factors": 8}, "lock_ttl_s": 5, "lookback_days": None},
        "serving": {
            "ingest_key_hashes": [hash_key(INGEST_KEY)],
            "admin_key_hashes": [hash_key(ADMIN_KEY)],
            "snapshot_poll_s": 0.3,
            "store_timeout_ms": 2000,
        },
    }
    drop = None
    if request.param == "embedded":
        s |= {
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "lake": {"url": str(tmp_path / "lake")},
        }
    else:
        (chost, cport) = request.getfixturevalue("cassandra_endpoint")
        (khost, kport) = request.getfixturevalue("kafka_endpoint")
        options = request.getfixturevalue("s3_storage_options")
        keyspace, topic = f"lambdarec_loop_{secrets.token_hex(4)}", f"loop-{secrets.token_hex(4)}"
        s |= {
            "store": {"url": f"cassandra://{chost}:{cport}/{keyspace}"},
            "log": {"url": f"kafka://{khost}:{kport}/{topic}", "dead_letter": f"{topic}-dlq", "consumer_group": topic},
            "lake": {"url": f"s3://{S3_BUCKET}/{topic}/lake", "storage_options": options},
            "archive": {"consumer_group": f"{topic}-archive"},
        }
        drop = keyspace
    settings = Settings.load(overrides=s)
    store = open_store(settings)
    store.init_schema()
    try:
        yield settings
    finally:
        if drop:
            store._session.execute(f"DROP KEYSPACE IF EXISTS {drop}", timeout=120)
        store.close()


def _toml(settings: Settings) -> str:
    s, lg, lake = settings.serving, settings.log, settings.lake
    options = "".join(f'{k} = "{v}"\n' for k, v in lake.storage_options.items())
    return (
        f'[store]\nurl = "{settings.store.url}"\n'
        f'[log]\nurl = "{lg.url}"\ndead_letter = "{lg.dead_letter}"\nconsumer_group = "{lg.consumer_group}"\n'
        f'[lake]\nurl = "{lake.url}"\n[lake.storage_options]\n{options}'
        f"[serving]\ningest_key_hashes = {s.ingest_key_hashes}\nadmin_key_hashes = {s.admin_key_hashes}\n"
        f"snapshot_poll_s = {s.snapshot_poll_s}\nstore_timeout_ms = {s.store_timeout_ms}\n"
    ).replace("'", '"')


@pytest.fixture
def first(settings: Settings, tmp_path: Path) -> SnapshotModel:
    """History imported into the lake and the first nightly read from it."""
    history = tmp_path / "history.parquet"
    synthesize(SynthSpec(users=120, items=80, events=4000, seed=4)).events.write_parquet(history)
    lake = open_lake(settings)
    assert import_file(lake, history, settings.batch).appended == 4000
    assert import_file(lake, history, settings.batch).appended == 0  # the same content again: nothing
    model = nightly(settings)
    assert model.manifest["lake_version"] == lake.version() and model.manifest["log_positions"] == {}
    return model


@pytest.fixture
def server(settings: Settings, first: SnapshotModel, tmp_path: Path) -> Iterator[str]:
    cfg = tmp_path / "serve.toml"
    cfg.write_text(_toml(settings))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (tmp_path / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdarec", "serve", "--port", str(port), "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server not ready:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def recs(base: str, user: str) -> dict:
    response = httpx.get(f"{base}/v1/users/{user}/recommendations", params={"k": 50}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def nightly(settings: Settings) -> SnapshotModel:
    manifest = run_batch(settings, force=True, progress=False).manifest
    with open_store(settings) as store:
        return SnapshotModel.load(store, manifest["version"])


def test_posted_events_reach_the_nightly_exactly_once_and_erasure_removes_the_user(
    settings: Settings, first: SnapshotModel, server: str
) -> None:
    lake = open_lake(settings)
    base, counted = server, first.manifest["counts"]["interactions"]
    with open_store(settings) as store:
        users = store.read_array(first.version, USER_IDS).tolist()
        user = next(u for u in users if store.read_user(first.version, u) is not None)
        row = store.read_user(first.version, user)
    seen = {str(first.item_ids[i]) for i in row.history.tolist()}
    unseen = [i for i in first.item_ids.tolist() if i not in seen][:2]
    late = first.cutoff_s - 86400.0  # before the first snapshot's cut-off; arrives after it was built
    now = time.time()
    events = [
        {"event_id": f"p-{n}", "user_id": user, "item_id": item, "event_type": "purchase", "timestamp": ts}
        for n, (item, ts) in enumerate(
            [(NEW_ITEM, now - 5), (NEW_ITEM, now - 4), (unseen[0], now - 3), (unseen[1], late)]
        )
    ]
    posted = httpx.post(f"{base}/v1/events", json=events, headers={"X-API-Key": INGEST_KEY}, timeout=10)
    assert posted.status_code == 202 and posted.json()["accepted"] == 4, posted.text
    with SpeedConsumer(settings) as speed:
        assert speed.run(until_idle_s=0.5).processed == 4

    before = recs(base, user)
    assert before["fresh_state_age_s"] is not None
    assert not {unseen[0], unseen[1]} & {i["item_id"] for i in before["items"]}  # what they just did is seen
    with open_store(settings) as store:
        fresh = store.read_fresh_users([user])[user]
    assert len(rebase(fresh, first, row).events) == 4  # the late event too: the first snapshot never read it

    with Archiver(settings) as archiver:
        stats = archiver.run(until_idle_s=0.5)
    assert stats.archived == 4 and stats.dead_lettered == 0

    second = nightly(settings)
    assert second.manifest["counts"]["interactions"] == counted + 4  # exactly once each
    assert second.manifest["log_positions"] == {str(p): n for p, n in lake.positions().items()}
    assert NEW_ITEM in second.item_index
    with open_store(settings) as store:
        row2 = store.read_user(second.version, user)
    assert {NEW_ITEM, *unseen} <= {str(second.item_ids[i]) for i in row2.history.tolist()}
    assert rebase(fresh, second, row2).events == []  # the snapshot has them now: fresh state lets go

    deadline = time.monotonic() + 60
    while True:  # through the flip the list keeps reflecting the events: no gap
        body = recs(base, user)
        assert not {unseen[0], unseen[1], NEW_ITEM} & {i["item_id"] for i in body["items"]}
        if body["snapshot"] == second.version:
            break
        assert time.monotonic() < deadline, "serving never swapped to the second snapshot"
        time.sleep(0.1)

    refused = httpx.delete(f"{base}/v1/users/{user}", timeout=10)
    assert refused.status_code == 401
    erased = httpx.delete(f"{base}/v1/users/{user}", headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    assert erased.status_code == 200, erased.text
    assert erased.json()["lake_rows_deleted"] >= 4
    after = recs(base, user)
    assert {i["source"] for i in after["items"]} <= {"popular", "trending"}, after
    assert lake.scan().filter(pl.col("user_id") == user).collect().height == 0
    third = nightly(settings)
    with open_store(settings) as store:
        assert user not in store.read_array(third.version, USER_IDS).tolist()
        assert store.read_user(third.version, user) is None
