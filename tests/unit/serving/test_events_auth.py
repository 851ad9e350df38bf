"""POST /v1/events: API keys and roles, per-event rejections, body and batch limits."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from lambdarec.eventlog import open_log
from lambdarec.events import EventRules
from lambdarec.settings import ConfigError, Settings
from serving_layer.auth import Keyring, hash_key, key_from_headers
from tests.unit.serving.conftest import ADMIN_KEY, INGEST_KEY, ingest


def event(n: int, **fields: object) -> dict:
    return {
        "event_id": f"t-{n}-{time.time_ns()}",
        "user_id": f"u{n}",
        "item_id": "i1",
        "event_type": "view",
        "timestamp": time.time() - 10,
        **fields,
    }


def appended(settings: Settings) -> int:
    with open_log(settings) as log:
        return sum(log.end_offsets().values())


def test_events_need_a_key(client: TestClient) -> None:
    response = client.post("/v1/events", json=event(1))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer KEY" in response.json()["message"]


def test_an_unknown_key_is_401_and_a_key_of_the_wrong_role_403(client: TestClient) -> None:
    assert client.post("/v1/events", json=event(1), headers={"X-API-Key": "guess"}).status_code == 401
    assert client.get("/v1/snapshots", headers=ingest()).status_code == 403
    assert "admin role" in client.get("/v1/snapshots", headers=ingest()).json()["message"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {INGEST_KEY}"}, {"X-API-Key": INGEST_KEY}, {"Authorization": f"bearer {ADMIN_KEY}"}],
    ids=["bearer", "x-api-key", "admin-may-ingest"],
)
def test_valid_events_are_appended_and_bad_ones_reported(client: TestClient, published, headers) -> None:
    settings, _ = published
    before = appended(settings)
    batch = [event(1), {"event_id": "x", "user_id": "u1"}, event(2, event_type="teleport"), event(3), "not an object"]
    response = client.post("/v1/events", json=batch, headers=headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 3)
    reasons = {r["index"]: r["reason"] for r in body["rejections"]}
    assert set(reasons) == {1, 2, 4}
    assert "missing field" in reasons[1] and "teleport" in reasons[2]  # event_type, item_id, timestamp missing
    assert appended(settings) == before + 2


def test_one_event_object_is_accepted_too(client: TestClient) -> None:
    response = client.post("/v1/events", json=event(7), headers=ingest())
    assert response.status_code == 202 and response.json()["accepted"] == 1


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    big = json.dumps([event(n, context={"pad": "x" * 2000}) for n in range(600)]).encode()
    assert len(big) > 1 << 20
    response = client.post("/v1/events", content=big, headers={**ingest(), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "serving.max_body_bytes" in response.json()["message"]


def test_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks():
        for _ in range(20):
            yield b"x" * 65536

    response = client.post("/v1/events", content=chunks(), headers=ingest())
    assert response.status_code == 413


def test_too_many_events_or_not_json_are_422(client: TestClient) -> None:
    many = client.post("/v1/events", json=[event(n) for n in range(1001)], headers=ingest())
    assert many.status_code == 422 and "serving.max_batch (1000)" in many.json()["message"]
    garbage = client.post("/v1/events", content=b"{nope", headers={**ingest(), "Content-Type": "application/json"})
    assert garbage.status_code == 422 and "not JSON" in garbage.json()["message"]
    scalar = client.post("/v1/events", json=42, headers=ingest())
    assert scalar.status_code == 422 and "event object" in scalar.json()["message"]


def test_keyring_roles_and_headers() -> None:
    ring = Keyring(ingest=[hash_key("a")], admin=[hash_key("b")])
    assert ring.roles("a") == {"ingest"}
    assert ring.roles("b") == {"admin", "ingest"}
    assert ring.roles("c") == frozenset()
    assert key_from_headers("Bearer  k1 ", None) == "k1"
    assert key_from_headers("Basic abc", "k2") == "k2"
    assert key_from_headers(None, None) is None


def test_settings_refuse_a_key_instead_of_its_digest() -> None:
    with pytest.raises(ConfigError, match="SHA-256 hex digests"):
        Settings.load(overrides={"serving": {"ingest_key_hashes": ["my-plain-key"]}})
    upper = hash_key("k").upper()
    assert Settings.load(overrides={"serving": {"admin_key_hashes": [upper]}}).serving.admin_key_hashes == [
        hash_key("k")
    ]


def test_feedback_events_are_ingested_and_an_impression_keeps_its_items(client: TestClient, published) -> None:
    settings, _ = published
    before = appended(settings)
    impression = {k: v for k, v in event(8, event_type="impression", item_ids=["i3", "i1"]).items() if k != "item_id"}
    batch = [event(8, event_type="dislike"), event(8, event_type="hide"), impression]
    batch.append({**impression, "item_ids": ["i1", "i1"]})
    response = client.post("/v1/events", json=batch, headers=ingest())
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 1)
    assert "lists 'i1' more than once" in body["rejections"][0]["reason"]
    assert appended(settings) == before + 3
    with open_log(settings) as log, log.consumer(f"feedback-{time.time_ns()}") as consumer:
        records = consumer.poll(max_records=100_000, timeout_ms=1000)
    rules = EventRules.from_settings(settings)
    shown = [e for r in records if (e := rules.parse(r.value)).event_id == impression["event_id"]]
    assert [(e.event_type, e.item_id, e.item_ids) for e in shown] == [("impression", "i3", ("i3", "i1"))]
