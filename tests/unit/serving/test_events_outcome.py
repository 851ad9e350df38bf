"""POST /v1/events when the log fails: "nothing was appended" only when that is true; otherwise the outcome is
unknown, and the body says the events may have been appended and that resending the same event_ids is safe."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lambdarec.eventlog import open_log
from tests.unit.eventlog.test_send_outcomes import FailingAt
from tests.unit.serving.conftest import ingest, make_settings, serving


def events(n: int) -> list[dict]:
    now = time.time() - 10
    return [{"event_id": f"x{i}", "user_id": f"u{i}", "item_id": "i1", "event_type": "view", "timestamp": now}
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("appended_first", [True, False], ids=["unknown", "not-sent"])
def test_a_failed_append_says_what_is_known(tmp_path: Path, appended_first: bool) -> None:
    # Before: 503 "the event log is unavailable, nothing was appended" even when all of them were.
    settings = make_settings(tmp_path)
    with open_log(settings) as real:
        log = FailingAt(real, fail_at=1, appended_first=appended_first)
        with serving(settings, log=log, ready=False) as client:  # type: ignore[arg-type]
            response = client.post("/v1/events", json=events(5), headers=ingest())
            again = client.post("/v1/events", json=events(5), headers=ingest())
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        message = response.json()["message"]
        if appended_first:
            assert "nothing was appended" not in message
            assert "may have been appended" in message and "same event_id" in message and "safe" in message
        else:
            assert "nothing was appended" in message
        assert again.status_code == 202 and again.json()["accepted"] == 5
        assert sum(real.end_offsets().values()) == (10 if appended_first else 5)


def test_the_openapi_document_states_the_contract(tmp_path: Path) -> None:
    with serving(make_settings(tmp_path), ready=False) as client:
        post = client.get("/openapi.json").json()["paths"]["/v1/events"]["post"]
    assert "may have been appended" in post["responses"]["503"]["description"]
    assert "same `event_id`" in post["description"]
