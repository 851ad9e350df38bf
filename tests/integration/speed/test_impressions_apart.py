"""Impressions with a consumer of their own (``speed.feedback.own_consumer``), through the whole loop on real
backends: events into one log, the positive-event consumer and the impressions consumer each in their own group,
serving over HTTP joining the two rows. SQLite store + SQLite log, and Cassandra + Kafka.

Every event is applied once, by one consumer: positive events by the speed consumer (impressions never reach its
state), impressions by the impressions consumer (a repeated event id once, a bad impression dead-lettered once);
a redelivery changes nothing; serving demotes the item shown six times, not the one clicked after being shown.
"""

# ruff: noqa: F811  (the log_file fixture is imported by name and requested as an argument)

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import speed_layer.apply as apply_module
from batch_layer.job import run_batch
from lambdarec.cli import app
from lambdarec.erasure import forget_users
from lambdarec.eventlog import open_log
from lambdarec.events import Event, encode_event
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.auth import hash_key
from serving_layer.recommend import read_states
from speed_layer.consumer import ConsumerHaltedError, SpeedConsumer
from speed_layer.impression_consumer import ImpressionConsumer
from tests.integration.speed.backends import backend_settings
from tests.unit.serving.conftest import log_file, serving  # noqa: F401  (log_file: a fixture)

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = {
        "batch": {"top_k": 50, "train": {"iterations": 5, "factors": 16}, "lock_ttl_s": 5},
        "serving": {"snapshot_poll_s": 0.1, "ingest_key_hashes": [hash_key("k")]},
        "store": {"current_cache_s": 0},
        "speed": {"feedback": {"own_consumer": True}},
    }
    return backend_settings(request, tmp_path, s, "impressions")


def event(n: int, user: str, etype: str, ts: float, item: str, items: tuple[str, ...] = ()) -> Event:
    return Event(event_id=f"imp-{n}", user_id=user, item_id=item, event_type=etype, timestamp=ts, item_ids=items)


def top(client, user: str, k: int = 100) -> list[dict]:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": k, "explain": True})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_impressions_and_positive_events_each_applied_once_by_their_own_consumer(
    settings: Settings, log_file: Path
) -> None:
    run_batch(settings, interactions=str(log_file), as_of=AS_OF, force=True, progress=False)
    user, other = "u7", "u8"
    with serving(settings) as client:
        first = [r["item_id"] for r in top(client, user, k=10)]
        tired, clicked = first[0], first[1]
        now = time.time() - 600
        events = [event(n, user, "impression", now + n, tired, (tired, clicked)) for n in range(6)]
        events += [event(10, user, "click", now + 10, clicked), event(11, other, "view", now + 11, tired)]
        events += [event(12, other, "impression", now + 12, clicked, (clicked,))]
        raw = [encode_event(e) for e in events]
        raw.append(encode_event(events[0]))  # the same impression resent: counted once
        bad = json.dumps({"event_id": "imp-bad", "user_id": user, "event_type": "impression", "timestamp": now,
                          "item_ids": [tired, tired]}).encode()  # fmt: skip
        raw.append(bad)
        with open_log(settings) as log:
            log.ensure_topic()
            log.append(raw, keys=[user] * 6 + [user, other, other, user, user])
        with SpeedConsumer(settings) as positives:
            positives.run(until_idle_s=2.0)
        with ImpressionConsumer(settings) as impressions:
            impressions.run(until_idle_s=2.0)

        assert (positives.stats.processed, positives.stats.dead_lettered, positives.stats.duplicates) == (2, 0, 0)
        assert (impressions.stats.processed, impressions.stats.dead_lettered) == (7, 1)
        assert impressions.stats.duplicates == 1
        with open_log(settings) as log:
            letters = log.read_dead_letters()
        assert [json.loads(d.value)["event_id"] for d in letters] == ["imp-bad"]
        assert "more than once" in letters[0].reason
        with open_store(settings) as store:
            fresh = store.read_fresh_users([user, other])
            assert fresh[user].shown == {} and fresh[other].shown == {}  # impressions never reach the fresh row
            assert [e[0] for e in fresh[user].events] == [clicked]
            shown = store.read_shown([user, other])
            assert shown[user].shown == {tired: [now + n for n in range(6)], clicked: [now + n for n in range(6)]}
            assert shown[other].shown == {clicked: [now + 12]}
            # a redelivery (a group that reads the log again) changes nothing: positions and event-id claims
            with ImpressionConsumer(settings, group=f"again-{secrets.token_hex(3)}") as again:
                again.run(until_idle_s=2.0)
            assert store.read_shown([user, other]) == shown
            model = client.app.state.service.served_model()
            joined = read_states(store, model.version, [user], len(model.item_ids), None, True)[user].fresh
            assert joined is not None and joined.shown == {tired: shown[user].shown[tired]}  # clicked: not fatigued
            alone = read_states(store, model.version, [user], len(model.item_ids))[user].fresh
            assert alone is not None and alone.shown == {}  # without the setting serving reads the fresh row only

        after = {r["item_id"]: r for r in top(client, user)}
        assert after[tired]["components"]["fatigue"] == pytest.approx(0.5)
        assert "shown 6 times without a click" in after[tired]["reason"]
        assert clicked not in after or after[clicked]["components"]["fatigue"] == 1.0  # clicked after being shown


def test_forget_erases_the_impressions_row_and_no_older_impression_comes_back(tmp_path: Path) -> None:
    settings = Settings.load(overrides={
        "store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/events"},
        "speed": {"feedback": {"own_consumer": True}},
    })  # fmt: skip
    with open_log(settings) as log:
        log.ensure_topic()
        log.append([event(n, "u1", "impression", time.time() - 60 + n, "i1", ("i1", "i2")) for n in range(3)])
    with ImpressionConsumer(settings) as impressions:
        impressions.run(until_idle_s=1.0)
    with open_store(settings) as store:
        assert set(store.read_shown(["u1"])["u1"].shown) == {"i1", "i2"}
        forget_users(settings, ["u1"], store=store)
        assert store.read_shown(["u1"])["u1"].shown == {}
        with ImpressionConsumer(settings, group="replays-the-log") as again:  # redelivered from the start
            again.run(until_idle_s=1.0)
        assert store.read_shown(["u1"])["u1"].shown == {}


def test_speed_run_impressions_applies_impressions_and_refuses_without_the_setting(tmp_path: Path) -> None:
    runner = CliRunner()
    urls = ["--log", f"sqlite:///{tmp_path}/events", "--store", f"sqlite:///{tmp_path}/store"]
    refused = runner.invoke(app, ["speed", "run", "--impressions", *urls, "--until-idle", "0.5"])
    assert refused.exit_code == 2 and "speed.feedback.own_consumer" in refused.output
    with open_log(Settings.load(overrides={"log": {"url": f"sqlite:///{tmp_path}/events"}})) as log:
        log.ensure_topic()
        log.append(
            [event(1, "u1", "impression", time.time(), "i1", ("i1",)), event(2, "u1", "view", time.time(), "i2")]
        )
    cfg = tmp_path / "lambdarec.toml"
    cfg.write_text("[speed.feedback]\nown_consumer = true\nimpressions_nice = 0\n")  # CliRunner: this process
    niceness = os.nice(0)
    ran = runner.invoke(
        app, ["speed", "run", "--impressions", *urls, "--until-idle", "0.5", "--json", "--config", str(cfg)]
    )
    assert ran.exit_code == 0, ran.output
    assert os.nice(0) == niceness  # in process: the test process keeps its priority (unit tests cover the child's)
    assert json.loads(ran.output.strip().splitlines()[-1])["processed"] == 1  # the impression, not the view


def test_a_bug_failing_every_positive_event_halts_the_consumer_though_impressions_lie_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The skipped impressions neither break nor extend the streak of failing records: a bug still halts the
    positive-event consumer before it dead-letters the log (events.max_consecutive_failures)."""
    settings = Settings.load(overrides={
        "store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/events"},
        "speed": {"feedback": {"own_consumer": True}}, "events": {"max_consecutive_failures": 5},
    })  # fmt: skip
    now = time.time() - 60
    events = []
    for n in range(20):
        events += [event(2 * n, f"u{n}", "view", now + n, "i1"), event(2 * n + 1, f"u{n}", "impression", now, "i2")]
    with open_log(settings) as log:
        log.ensure_topic()
        log.append(events, keys=["u0"] * len(events))  # one partition: the log order above

    def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'item_factors'")

    monkeypatch.setattr(apply_module, "apply_user_events", broken)
    with SpeedConsumer(settings) as c, pytest.raises(ConsumerHaltedError, match="max_consecutive_failures"):
        c.run(until_idle_s=2.0)
    with open_log(settings) as log:
        assert log.read_dead_letters(limit=10) == []
