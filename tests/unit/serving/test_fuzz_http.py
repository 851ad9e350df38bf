"""Fuzz ``POST /v1/events`` (issue 12, finding 4): raw bodies never get a 5xx; every event of a JSON array is
counted as appended or refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import encode, event_like, examples, wire_bytes
from tests.unit.serving.conftest import ingest

pytestmark = pytest.mark.fuzz
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""])


@settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(wire_bytes, max_size=8), st.booleans(), CONTENT_TYPES)
def test_raw_event_bodies_never_get_a_server_error(client: TestClient, events: list[bytes], one: bool, ctype) -> None:
    body = events[0] if one and events else b"[" + b",".join(events) + b"]"
    headers = {**ingest(), "Content-Type": ctype} if ctype else ingest()
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code < 500, response.text
    if body and ctype in ("text/plain", ""):  # an empty body has no type to refuse
        assert response.status_code == 415


@settings(max_examples=examples(150), deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(event_like, max_size=8))
def test_every_event_of_an_array_is_appended_or_refused_with_a_reason(client: TestClient, events: list) -> None:
    body = b"[" + b",".join(encode(e) for e in events) + b"]"
    response = client.post("/v1/events", content=body, headers={**ingest(), "Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code == 202:  # NaN or Infinity tokens make the body itself invalid JSON: a 422
        result = response.json()
        assert result["accepted"] + result["rejected"] == len(events)
        assert all(r["reason"] for r in result["rejections"])
