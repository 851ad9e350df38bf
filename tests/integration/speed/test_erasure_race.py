"""``forget`` racing the speed layer: the consumer read the user's state before the erasure and writes after it.

Before the erasure was kept beside the row, that write replaced the tombstone: ``erased_at`` cleared, the erased
events back in fresh state and the user's snapshot rows served again. Runs on SQLite store + log and on
Cassandra + Kafka; ``forget`` runs as the CLI would, with its own store and log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambdarec.erasure import ForgetResult, forget_users
from lambdarec.settings import Settings
from lambdarec.store import open_store
from speed_layer.consumer import SpeedConsumer
from tests.integration.raw_log import append_raw
from tests.integration.speed.backends import backend_settings

T0 = 1.77e9


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return backend_settings(request, tmp_path, {"speed": {"poll_max_records": 500}}, "erasure")


def events(user: str, items: list[str], start: float) -> list[bytes]:
    keys = ("event_id", "user_id", "item_id", "event_type", "timestamp")
    rows = [(f"{user}-{item}", user, item, "click", start + n) for n, item in enumerate(items)]
    return [json.dumps(dict(zip(keys, row, strict=True))).encode() for row in rows]


class ForgetMidBatch(SpeedConsumer):
    """Runs ``forget`` for ``user`` once, after a batch with their events read their state, before it is written."""

    def __init__(self, settings: Settings, user: str) -> None:
        super().__init__(settings)
        self.user = user
        self.forgot: ForgetResult | None = None

    def _compute(self, good: list, inputs: Any) -> tuple[list, list, dict]:
        if self.forgot is None and any(event.user_id == self.user for event, _ in good):
            assert self.user in inputs.states, "the state was read before the erasure"
            self.forgot = forget_users(self.settings, [self.user])
        return super()._compute(good, inputs)


def test_an_erasure_during_a_batch_is_not_undone_by_its_write(settings: Settings) -> None:
    append_raw(settings, events("u1", ["i1", "i2"], T0) + events("u2", ["i1"], T0))
    with SpeedConsumer(settings) as consumer:  # u1 has a state before the race
        consumer.run(until_idle_s=2.0)
    append_raw(settings, events("u1", ["i3"], T0 + 10) + events("u2", ["i4"], T0 + 10))
    with ForgetMidBatch(settings, "u1") as racing:
        racing.run(until_idle_s=2.0)
        assert racing.forgot is not None, "forget ran inside the batch"
        erased_at = racing.forgot.erased_at
    with open_store(settings) as store:
        states = store.read_fresh_users(["u1", "u2"])
    u1 = states["u1"]
    assert (u1.erased_at, u1.events, u1.recent) == (erased_at, [], []), "the erased history came back"
    assert [e[0] for e in states["u2"].events] == ["i1", "i4"], "the other user's events are all applied"
    # what the log brings after the erasure is the user's again, and nothing from before it
    append_raw(settings, events("u1", ["i5", "i6"], T0 + 20))
    with SpeedConsumer(settings) as consumer:
        consumer.run(until_idle_s=2.0)
    with open_store(settings) as store:
        u1 = store.read_fresh_users(["u1"])["u1"]
    assert [e[0] for e in u1.events] == ["i5", "i6"]
    assert [r[0] for r in u1.recent] == ["i5", "i6"]
    assert (u1.erased_at, u1.erasure_seen) == (erased_at, erased_at)
