"""Impressions on a log of their own (``log.impressions_topic``): every ingest path sends ``impression`` events
there, so the positive-event consumer never reads one; the impressions consumer applies them from there; an
erasure sets the impressions row past that log's end. SQLite store + SQLite log, and Cassandra + Kafka."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.erasure import forget_users
from lambdarec.eventlog import Record, open_impressions_log, open_ingest_log, open_log, send_events
from lambdarec.events import Event, EventRules, encode_event
from lambdarec.events.peek import is_impression
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.auth import hash_key
from speed_layer.consumer import SpeedConsumer
from speed_layer.impression_consumer import ImpressionConsumer
from tests.integration.speed.backends import backend_settings
from tests.unit.serving.conftest import serving

USERS = [f"u{k}" for k in range(5)]


@pytest.fixture(params=["embedded", "real"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = {"speed": {"feedback": {"own_consumer": True}}, "serving": {"ingest_key_hashes": [hash_key("k")]}}
    settings = backend_settings(request, tmp_path, s, "imptopic")
    settings.log.impressions_topic = f"impressions-{secrets.token_hex(4)}"
    return settings


def mixed(now: float, clicks: int = 20, per_click: int = 10, tag: str = "") -> list[Event]:
    """``clicks`` clicks, each after ``per_click`` impressions (ten times the click volume by default)."""
    out = []
    for n in range(clicks):
        user, item = USERS[n % 5], f"i{n % 7}"
        for k in range(per_click):
            shown = (f"i{(n + k) % 7}", f"i{(n + k + 1) % 7}")
            out.append(Event(event_id=f"s{tag}{n}-{k}", user_id=user, item_id=shown[0], event_type="impression",
                             timestamp=now + n + k / 100, item_ids=shown))  # fmt: skip
        out.append(Event(event_id=f"c{tag}{n}", user_id=user, item_id=item, event_type="click", timestamp=now + n))
    return out


def test_ingest_sends_impressions_to_their_own_log_and_the_positive_consumer_never_reads_one(
    settings: Settings,
) -> None:
    now = time.time() - 600
    events = mixed(now)
    with open_ingest_log(settings) as log:
        log.ensure_topic()
        result = send_events(log, [encode_event(e) for e in events], EventRules.from_settings(settings))
    assert result.accepted == 220
    with open_log(settings) as main, open_impressions_log(settings) as own:
        assert sum(main.end_offsets().values()) == 20  # the clicks alone
        assert sum(own.end_offsets().values()) == 200  # the impressions alone

    polled: list[Record] = []
    with SpeedConsumer(settings, observer=lambda records, _at: polled.extend(records)) as positives:
        positives.run(until_idle_s=2.0)
    assert len(polled) == 20 and not any(is_impression(r.value) for r in polled)
    assert (positives.stats.processed, positives.stats.dead_lettered) == (20, 0)
    with ImpressionConsumer(settings) as impressions:
        impressions.run(until_idle_s=2.0)
    assert (impressions.stats.processed, impressions.stats.dead_lettered) == (200, 0)

    with open_store(settings) as store:
        assert all(f.shown == {} for f in store.read_fresh_users(USERS).values())
        shown = store.read_shown(USERS)
        assert sum(len(times) for row in shown.values() for times in row.shown.values()) == 400
        # erased: the impressions row is set past the impressions log's end, so reading that log again (a new
        # group) never brings an older impression back, and a later one is applied
        forget_users(settings, ["u0"], store=store)
        with ImpressionConsumer(settings, group=f"again-{secrets.token_hex(3)}") as again:
            again.run(until_idle_s=2.0)
        assert store.read_shown(["u0"])["u0"].shown == {}
        later = Event(event_id="s-later", user_id="u0", item_id="i1", event_type="impression", timestamp=now + 100,
                      item_ids=("i1",))  # fmt: skip
        with open_ingest_log(settings) as log:
            send_events(log, [encode_event(later)], EventRules.from_settings(settings))
        with ImpressionConsumer(settings) as impressions:
            impressions.run(until_idle_s=2.0)
        assert store.read_shown(["u0"])["u0"].shown == {"i1": [now + 100]}


def test_post_events_and_events_send_route_impressions_to_their_own_log(tmp_path: Path) -> None:
    settings = Settings.load(overrides={
        "store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/events",
                                                                  "impressions_topic": "impressions"},
        "speed": {"feedback": {"own_consumer": True}}, "serving": {"ingest_key_hashes": [hash_key("k")]},
    })  # fmt: skip
    now = time.time() - 600
    posted = [json.loads(encode_event(e)) for e in mixed(now, clicks=3, per_click=4, tag="p")]
    with serving(settings, ready=False) as client:
        response = client.post("/v1/events", json=posted, headers={"Authorization": "Bearer k"})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 15
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join(encode_event(e) for e in mixed(now, clicks=2, per_click=5, tag="f")) + b"\n")
    config = tmp_path / "lambdarec.toml"
    config.write_text(
        f'[log]\nurl = "sqlite:///{tmp_path}/events"\nimpressions_topic = "impressions"\n'
        "[speed.feedback]\nown_consumer = true\n"
    )
    sent = CliRunner().invoke(app, ["events", "send", str(lines), "--config", str(config), "--json"])
    assert sent.exit_code == 0, sent.output
    with open_log(settings) as main, open_impressions_log(settings) as own:
        assert sum(main.end_offsets().values()) == 3 + 2
        assert sum(own.end_offsets().values()) == 12 + 10
        assert (tmp_path / "events" / "impressions" / "events.sqlite3").exists()  # the SQLite log of its own


def test_an_impressions_topic_without_the_impressions_consumer_is_refused() -> None:
    with pytest.raises(Exception, match=r"needs speed\.feedback\.own_consumer"):
        Settings.load(overrides={"log": {"impressions_topic": "impressions"}})


def _click_then_impression_on_the_impressions_log(
    settings: Settings, user: str, click_id: str, shown_id: str
) -> tuple[float, Event]:
    """A producer writing a click (not an impression) and then an impression of ``user`` straight to the topic;
    returns the click's time and the click."""
    now = time.time() - 600
    click = Event(event_id=click_id, user_id=user, item_id="i3", event_type="click", timestamp=now)
    shown = Event(event_id=shown_id, user_id=user, item_id="i4", event_type="impression", timestamp=now + 1,
                  item_ids=("i4",))  # fmt: skip
    with open_impressions_log(settings) as own:
        own.ensure_topic()
        own.append([encode_event(click), encode_event(shown)], keys=[user, user])
    return now, click


def test_an_erased_users_stray_click_on_the_impressions_log_is_refused_silently_not_dead_lettered(
    settings: Settings,
) -> None:
    _click_then_impression_on_the_impressions_log(settings, "u9", "u9-click", "u9-shown")
    forget_users(settings, ["u9"])  # covers both: neither may be applied nor kept with u9's data
    with ImpressionConsumer(settings) as impressions:
        impressions.run(until_idle_s=2.0)
    assert impressions.stats.dead_lettered == 0
    with open_impressions_log(settings) as own:
        assert own.read_dead_letters(10) == []
    with open_store(settings) as store:
        assert store.read_shown(["u9"])["u9"].shown == {}


def test_an_event_written_straight_to_the_impressions_log_that_is_not_an_impression_is_dead_lettered(
    settings: Settings, tmp_path: Path
) -> None:
    now, click = _click_then_impression_on_the_impressions_log(settings, "u1", "stray-click", "s-ok")
    with ImpressionConsumer(settings) as impressions:
        impressions.run(until_idle_s=2.0)
    assert (impressions.stats.processed, impressions.stats.dead_lettered) == (1, 1)
    with open_impressions_log(settings) as own:
        letters = own.read_dead_letters(10)
    assert [json.loads(d.value)["event_id"] for d in letters] == ["stray-click"]
    assert "not an impression" in letters[0].reason and "log.impressions_topic" in letters[0].reason
    with open_store(settings) as store:
        assert store.read_shown(["u1"])["u1"].shown == {"i4": [now + 1]}
        assert store.read_fresh_users(["u1"]) == {}  # the click reached no state

    # resent through ingest it goes to the positive log and is applied there, once: its event id was not claimed
    with open_ingest_log(settings) as log:
        send_events(log, [encode_event(click)], EventRules.from_settings(settings))
    with SpeedConsumer(settings) as positives:
        positives.run(until_idle_s=2.0)
    assert (positives.stats.processed, positives.stats.duplicates, positives.stats.dead_lettered) == (1, 0, 0)
    with open_store(settings) as store:
        assert [i for i, _ in store.read_fresh_users(["u1"])["u1"].recent] == ["i3"]

    config = tmp_path / "lambdarec.toml"
    log_cfg = settings.log
    config.write_text(f'[log]\nurl = "{log_cfg.url}"\nimpressions_topic = "{log_cfg.impressions_topic}"\n'
                      "[speed.feedback]\nown_consumer = true\n")  # fmt: skip
    shown_cli = CliRunner().invoke(app, ["events", "dead-letters", "--impressions", "--json", "--config", str(config)])
    assert shown_cli.exit_code == 0, shown_cli.output
    rows = json.loads(shown_cli.output.splitlines()[-1])
    assert len(rows) == 1 and "not an impression" in rows[0]["reason"]
