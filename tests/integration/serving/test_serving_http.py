"""The serving layer as a real uvicorn process (`lambdarec serve`) on the Cassandra store and the Kafka log.

An event posted to /v1/events changes the user's next list once the speed layer has run; a rollback through
/v1/snapshots/{version}/activate takes effect in the running process; keys are enforced over real HTTP.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.auth import hash_key
from speed_layer.consumer import SpeedConsumer

pytestmark = [pytest.mark.integration, pytest.mark.cassandra, pytest.mark.kafka]

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
INGEST_KEY, ADMIN_KEY = secrets.token_urlsafe(16), secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def real(
    cassandra_endpoint, kafka_endpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Path]]:
    """Settings on a throwaway keyspace and topic with one published snapshot, and the interaction log."""
    (chost, cport), (khost, kport) = cassandra_endpoint, kafka_endpoint
    keyspace, topic = f"lambdarec_serve_{secrets.token_hex(4)}", f"serve-{secrets.token_hex(4)}"
    settings = Settings.load(
        overrides={
            "store": {"url": f"cassandra://{chost}:{cport}/{keyspace}"},
            "log": {"url": f"kafka://{khost}:{kport}/{topic}", "dead_letter": f"{topic}-dlq", "consumer_group": topic},
            "batch": {"top_k": 50, "train": {"iterations": 5, "factors": 16}, "lock_ttl_s": 5},
            "serving": {
                "ingest_key_hashes": [hash_key(INGEST_KEY)],
                "admin_key_hashes": [hash_key(ADMIN_KEY)],
                "snapshot_poll_s": 0.5,
                "trending_refresh_s": 0.5,
                "store_timeout_ms": 2000,
            },
        }
    )
    log_file = tmp_path_factory.mktemp("serve-real") / "log.parquet"
    synthesize(SynthSpec(users=300, items=200, events=12_000, seed=9)).events.write_parquet(log_file)
    store = open_store(settings)
    store.init_schema()
    run_batch(settings, interactions=str(log_file), as_of=AS_OF, force=True, progress=False, store=store)
    try:
        yield settings, log_file
    finally:
        store._session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(settings: Settings) -> str:
    s, lg = settings.serving, settings.log
    return (
        f'[store]\nurl = "{settings.store.url}"\n'
        f'[log]\nurl = "{lg.url}"\ndead_letter = "{lg.dead_letter}"\nconsumer_group = "{lg.consumer_group}"\n'
        f"[serving]\ningest_key_hashes = {s.ingest_key_hashes}\nadmin_key_hashes = {s.admin_key_hashes}\n"
        f"snapshot_poll_s = {s.snapshot_poll_s}\ntrending_refresh_s = {s.trending_refresh_s}\n"
        f"store_timeout_ms = {s.store_timeout_ms}\n"
    ).replace("'", '"')


@pytest.fixture(scope="module")
def server(real, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``lambdarec serve --port P --config cfg.toml`` in a subprocess; its base URL once /readyz says 200."""
    settings, _ = real
    root = tmp_path_factory.mktemp("serve-process")
    cfg = root / "cfg.toml"
    cfg.write_text(_toml(settings))
    port = _free_port()
    with (root / "server.log").open("wb") as out:
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
                raise AssertionError(f"server not ready (exit {proc.poll()}):\n{(root / 'server.log').read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def recommendations(base: str, user: str, **params: object) -> dict:
    response = httpx.get(f"{base}/v1/users/{user}/recommendations", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_posted_event_changes_the_users_next_list_after_the_speed_layer_runs(real, server: str) -> None:
    settings, _ = real
    user = "u7"
    before = recommendations(server, user, k=10)
    assert before["degraded"] is False and before["fresh_state_age_s"] is None
    touched = [item["item_id"] for item in before["items"][:3]]
    events = [
        {
            "event_id": f"srv-{secrets.token_hex(6)}",
            "user_id": user,
            "item_id": item,
            "event_type": "purchase",
            "timestamp": (AS_OF + timedelta(hours=1, seconds=n)).isoformat(),
        }
        for n, item in enumerate(touched)
    ]
    posted = httpx.post(f"{server}/v1/events", json=events, headers={"X-API-Key": INGEST_KEY}, timeout=30)
    assert posted.status_code == 202, posted.text
    assert posted.json() == {"accepted": 3, "rejected": 0, "rejections": []}
    with SpeedConsumer(settings) as consumer:
        stats = consumer.run(until_idle_s=2.0)
    assert stats.processed >= 3
    after = recommendations(server, user, k=10, explain="true")
    ids = [item["item_id"] for item in after["items"]]
    assert not set(ids) & set(touched), "items the user just bought are not recommended back"
    assert ids != [item["item_id"] for item in before["items"]]
    assert after["fresh_state_age_s"] is not None
    assert all(item["reason"] for item in after["items"])


def test_rollback_over_http_takes_effect_without_restart(real, server: str) -> None:
    settings, log_file = real
    first = recommendations(server, "u3")["snapshot"]
    second = run_batch(
        settings, interactions=str(log_file), as_of=AS_OF - timedelta(days=1), force=True, progress=False
    ).manifest["version"]
    deadline = time.monotonic() + 30
    while recommendations(server, "u3")["snapshot"] != second:
        assert time.monotonic() < deadline, "the server never swapped to the new snapshot"
        time.sleep(0.2)
    denied = httpx.post(f"{server}/v1/snapshots/{first}/activate", headers={"X-API-Key": INGEST_KEY}, timeout=30)
    assert denied.status_code == 403
    response = httpx.post(
        f"{server}/v1/snapshots/{first}/activate", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert recommendations(server, "u3")["snapshot"] == first
    listed = httpx.get(f"{server}/v1/snapshots", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).json()
    assert listed["current"] == first and listed["serving"] == first


def test_keys_limits_and_metrics_over_real_http(server: str) -> None:
    assert httpx.post(f"{server}/v1/events", json=[], timeout=10).status_code == 401
    big = httpx.post(
        f"{server}/v1/events",
        content=b"[" + b" " * (1 << 21) + b"]",
        headers={"X-API-Key": INGEST_KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413
    assert httpx.get(f"{server}/v1/items/not-an-item/similar", timeout=10).status_code == 404
    assert httpx.get(f"{server}/v1/users/u1/recommendations", params={"k": 0}, timeout=10).status_code == 422
    metrics = httpx.get(f"{server}/metrics", timeout=10).text
    assert (
        'lambdarec_serving_request_seconds_count{method="GET",route="/v1/users/{user_id}/recommendations"}' in metrics
    )
