"""Freshness where operators look: serving's /metrics measures, per list that used fresh state, how long ago its
newest event was appended to the log, and per list the served snapshot's data age (issue 18 item 10)."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from lambdarec.model.rows import FreshUser
from lambdarec.store import open_store

from .conftest import serving


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_event_to_served_is_observed_first_then_repeat_and_snapshot_age_per_list(fresh_store) -> None:
    settings, _ = fresh_store
    appended = time.time() - 3.0
    with open_store(settings) as store:
        store.write_fresh_users([FreshUser(user_id="u1", recent=[("i1", appended)], updated_at=appended,
                                           appended_at=appended)])  # fmt: skip
        store.write_fresh_users([FreshUser(user_id="u2", recent=[("i2", appended)], updated_at=appended)])  # older row
    with serving(settings) as client:
        for user in ("u1", "u1", "u2", "nobody"):
            assert client.get(f"/v1/users/{user}/recommendations").status_code == 200
        assert client.post("/v1/recommendations", json={"users": ["u1", "u2"]}).status_code == 200
        samples = _samples(client.get("/metrics").text)
    first = samples[("lambdarec_event_to_served_seconds_count", (("serve", "first"),))]
    repeat = samples[("lambdarec_event_to_served_seconds_count", (("serve", "repeat"),))]
    assert (first, repeat) == (1, 2)  # u1 once first, then twice again; u2's row predates the field: not observed
    assert 3.0 <= samples[("lambdarec_event_to_served_seconds_sum", (("serve", "first"),))] < 60.0
    assert samples[("lambdarec_served_snapshot_age_seconds_count", ())] == 6  # every list, fresh state or not
