"""The impressions log (``log.impressions_topic``) reaches the master dataset too, by an archiver of its own: each
log's events land exactly once (a re-read of both logs changes nothing), each log's positions are recorded apart,
bad impressions go to the lake's dead letters, and an erasure drops the user's older events from both logs. On
the SQLite log and on real Kafka."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from batch_layer.archive import Archiver
from lambdarec.cli import app
from lambdarec.erasure import forget_users
from lambdarec.eventlog import open_impressions_log, open_ingest_log, open_log, send_events
from lambdarec.events import Event, EventRules, encode_event
from lambdarec.lake import open_lake
from lambdarec.settings import Settings


@pytest.fixture(params=["sqlite", "kafka"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s: dict = {
        "lake": {"url": str(tmp_path / "lake")},
        "store": {"url": f"sqlite:///{tmp_path}/store"},
        "archive": {"max_batch_events": 100, "max_batch_s": 0.5, "poll_max_records": 100},
        "speed": {"feedback": {"own_consumer": True}},
    }
    if request.param == "sqlite":
        s["log"] = {"url": f"sqlite:///{tmp_path}/events", "impressions_topic": "impressions"}
    else:
        host, port = request.getfixturevalue("kafka_endpoint")
        topic = f"imparch-{secrets.token_hex(4)}"
        s["log"] = {"url": f"kafka://{host}:{port}/{topic}", "impressions_topic": f"{topic}-impressions"}
        s["archive"]["consumer_group"] = topic
    return Settings.load(overrides=s)


def events(now: float, users: list[str], tag: str) -> list[Event]:
    """Per user, one click after ten impressions."""
    out = []
    for n, user in enumerate(users):
        for k in range(10):
            out.append(Event(event_id=f"{tag}s{n}-{k}", user_id=user, item_id=f"i{k}", event_type="impression",
                             timestamp=now + n + k / 100, item_ids=(f"i{k}", f"i{k + 1}")))  # fmt: skip
        out.append(Event(event_id=f"{tag}c{n}", user_id=user, item_id="i3", event_type="click", timestamp=now + n))
    return out


def send(settings: Settings, batch: list[Event]) -> None:
    with open_ingest_log(settings) as log:
        log.ensure_topic()
        assert send_events(log, [encode_event(e) for e in batch], EventRules.from_settings(settings)).accepted == len(
            batch
        )


def archive(settings: Settings, group: str | None = None) -> None:
    for impressions in (False, True):
        g = None if group is None else group + ("-impressions" if impressions else "")
        with Archiver(settings, impressions=impressions, group=g) as archiver:
            archiver.run(until_idle_s=1.0)


def test_both_logs_reach_the_lake_exactly_once_and_an_erasure_covers_both(settings: Settings) -> None:
    now = time.time() - 3600
    users = [f"u{k}" for k in range(8)]
    before = events(now, users, "a")
    send(settings, before)
    bad = json.dumps({"event_id": "bad", "user_id": "u1", "event_type": "impression", "timestamp": now,
                      "item_ids": ["i1", "i1"]}).encode()  # fmt: skip
    with open_impressions_log(settings) as own:
        own.append([bad], keys=["u1"])  # a producer writing to the topic directly: only the archiver judges it
    forget_users(settings, ["u0"])  # before anything was archived: the archivers must drop u0's older events
    after = events(now + 100, ["u0"], "b")  # u0 comes back: these are kept
    send(settings, after)

    archive(settings)
    lake = open_lake(settings)
    rows = lake.scan().select("event_id", "event_type", "source").collect()
    expected = {e.event_id for e in before if e.user_id != "u0"} | {e.event_id for e in after}
    assert sorted(rows["event_id"].to_list()) == sorted(expected)  # each once, none of u0's before the erasure
    sources = dict(zip(rows["event_id"].to_list(), rows["source"].to_list(), strict=True))
    kinds = {e.event_id: e.event_type for e in before + after if e.event_id in expected}
    assert {sources[e] for e, kind in kinds.items() if kind == "impression"} == {"impressions"}
    assert {sources[e] for e, kind in kinds.items() if kind == "click"} == {"log"}
    with open_log(settings) as main, open_impressions_log(settings) as own:
        main_end, own_end = main.end_offsets(), own.end_offsets()
    assert lake.positions(partitions=main_end) == {p: n for p, n in main_end.items() if n}
    assert lake.positions(partitions=own_end, log="impressions") == {p: n for p, n in own_end.items() if n}
    shown = lake.summary()
    assert shown["impressions_positions"] == {str(p): n for p, n in sorted(own_end.items()) if n}
    assert shown["positions"] == {str(p): n for p, n in sorted(main_end.items()) if n}
    letters = lake.dead_letters()
    assert letters.height == 1 and "more than once" in letters["reason"][0]

    archive(settings, group=f"again-{secrets.token_hex(3)}")  # both logs read again from the start
    assert lake.scan().select(pl.len()).collect().item() == len(expected)
    assert lake.dead_letters().height == 1


def test_archive_run_impressions_needs_the_impressions_topic(tmp_path: Path) -> None:
    config = tmp_path / "lambdarec.toml"
    config.write_text(f'[log]\nurl = "sqlite:///{tmp_path}/events"\n[lake]\nurl = "{tmp_path}/lake"\n')
    result = CliRunner().invoke(
        app, ["archive", "run", "--impressions", "--until-idle", "0.1", "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "needs log.impressions_topic" in result.output


def test_lake_wait_waits_for_the_impressions_log_too(tmp_path: Path) -> None:
    config = tmp_path / "lambdarec.toml"
    config.write_text(
        f'[log]\nurl = "sqlite:///{tmp_path}/events"\nimpressions_topic = "impressions"\n'
        f'[lake]\nurl = "{tmp_path}/lake"\n[speed.feedback]\nown_consumer = true\n'
    )
    settings = Settings.load(config)
    send(settings, events(time.time() - 60, ["u1", "u2"], "w"))
    with Archiver(settings) as archiver:  # the main log only
        archiver.run(until_idle_s=0.5)
    wait = ["lake", "wait", "--until", "now", "--timeout", "1", "--json", "--config", str(config)]
    pending = CliRunner().invoke(app, wait)
    assert pending.exit_code == 75, pending.output
    assert json.loads(pending.output.splitlines()[-1])["impressions"]["reached"] is False
    with Archiver(settings, impressions=True) as archiver:
        archiver.run(until_idle_s=0.5)
    done = CliRunner().invoke(app, wait)
    assert done.exit_code == 0, done.output
    body = json.loads(done.output.splitlines()[-1])
    assert body["reached"] and sum(body["impressions"]["targets"].values()) == 20


def _stray_click(settings: Settings, user: str, event_id: str, *, other: str, prefix: str) -> Event:
    """Events of ``other`` sent through ingest, and a click of ``user`` written straight to the impressions topic
    (a producer's mistake); returns the click."""
    now = time.time() - 3600
    click = Event(event_id=event_id, user_id=user, item_id="i3", event_type="click", timestamp=now)
    send(settings, events(now, [other], prefix))
    with open_impressions_log(settings) as own:
        own.append([encode_event(click)], keys=[user])
    return click


def test_an_event_on_the_impressions_log_that_is_not_an_impression_goes_to_the_lakes_dead_letters(
    settings: Settings,
) -> None:
    click = _stray_click(settings, "u1", "stray-click", other="u2", prefix="k")
    archive(settings)
    lake = open_lake(settings)
    ids = lake.scan().select("event_id").collect()["event_id"].to_list()
    assert "stray-click" not in ids and len(ids) == 11  # never applied by the speed layer: not archived as if it were
    letters = lake.dead_letters()
    assert letters.height == 1 and "not an impression" in letters["reason"][0]
    with open_impressions_log(settings) as own:
        own_end = own.end_offsets()
    assert lake.positions(partitions=own_end, log="impressions") == {p: n for p, n in own_end.items() if n}

    send(settings, [click])  # resent through ingest: to the main log, archived there once
    archive(settings)
    archive(settings, group=f"again-{secrets.token_hex(3)}")
    rows = lake.scan().filter(pl.col("event_id") == "stray-click").select("source").collect()
    assert rows["source"].to_list() == ["log"]
    assert lake.dead_letters().height == 1


def test_an_erased_users_stray_click_on_the_impressions_log_is_erased_not_kept_in_the_dead_letters(
    settings: Settings,
) -> None:
    _stray_click(settings, "u9", "u9-click", other="u2", prefix="e")
    forget_users(settings, ["u9"])  # before the archiver read it: u9's bytes must reach no table of the lake
    with Archiver(settings, impressions=True) as archiver:
        archiver.run(until_idle_s=1.0)
        assert (archiver.stats.erased, archiver.stats.dead_lettered) == (1, 0)
    lake = open_lake(settings)
    assert lake.dead_letters().height == 0
    assert "u9" not in lake.scan().select("user_id").collect()["user_id"].to_list()
