"""Impressions on a log of their own (``log.impressions_topic``): the producers' log (``IngestLog``) sends each
``impression`` to the impressions log and every other event to the main log, in order, keyed by user; an append
that reached the main log but not the impressions log is reported as of unknown outcome with what was confirmed,
never as "nothing appended" (a resend under the same event ids is then safe). Real embedded SQLite logs; the
failing impressions log is the real one behind a hook, as in ``test_send_outcomes``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.eventlog import (
    AppendOutcomeUnknownError,
    EventLogUnavailableError,
    IngestLog,
    SendInterruptedError,
    open_impressions_log,
    open_ingest_log,
    open_log,
    send_events,
)
from lambdarec.events import EventRules
from lambdarec.settings import Settings

RULES = EventRules(known_types=frozenset({"view"}), max_bytes=16384, future_tolerance_s=300.0)


def settings(tmp_path: Path) -> Settings:
    return Settings.load(overrides={"log": {"url": f"sqlite:///{tmp_path}/events", "impressions_topic": "shown"},
                                    "speed": {"feedback": {"own_consumer": True}}})  # fmt: skip


def view(i: int) -> bytes:
    return json.dumps({"event_id": f"v{i}", "user_id": f"u{i % 3}", "item_id": "i1", "event_type": "view",
                       "timestamp": time.time() - 60}).encode()  # fmt: skip


def shown(i: int) -> bytes:
    return json.dumps({"event_id": f"s{i}", "user_id": f"u{i % 3}", "event_type": "impression",
                       "item_ids": ["i1", "i2"], "timestamp": time.time() - 60}).encode()  # fmt: skip


def values(log) -> list[bytes]:  # type: ignore[no-untyped-def]
    with log.consumer("read-all") as consumer:
        records = consumer.poll(1000, timeout_ms=200)
    return [r.value for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def test_impressions_go_to_their_own_log_and_the_rest_to_the_main_log(tmp_path: Path) -> None:
    s = settings(tmp_path)
    views = [view(i) for i in range(6)]
    impressions = [shown(i) for i in range(6)] + [shown(i + 100) for i in range(6)]
    events = [e for i in range(6) for e in (views[i], impressions[i], impressions[i + 6])]
    with open_ingest_log(s) as log:
        assert isinstance(log, IngestLog)
        log.ensure_topic()
        assert send_events(log, events, RULES).accepted == 18
    with open_log(s) as main, open_impressions_log(s) as own:
        assert sorted(values(main)) == sorted(views)
        assert sorted(values(own)) == sorted(impressions)
        by_user = {}
        with own.consumer("keys") as consumer:
            for r in consumer.poll(1000, timeout_ms=200):
                by_user.setdefault(r.key, []).append(json.loads(r.value)["event_id"])
        assert by_user["u0"] == ["s0", "s102", "s3", "s105"]  # keyed by user, in input order


class Failing:
    """The real impressions log whose appends fail: ``confirmed`` of them reach it, then it stops answering
    (an unknown outcome), or, with ``confirmed=None``, none is handed over at all (unavailable)."""

    def __init__(self, log, confirmed: int | None):  # type: ignore[no-untyped-def]
        self.log, self.confirmed = log, confirmed

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.log, name)

    def append(self, events, keys=None):  # type: ignore[no-untyped-def]
        if self.confirmed is None:
            raise EventLogUnavailableError("impressions log down")
        self.log.append(list(events)[: self.confirmed], list(keys)[: self.confirmed])
        raise AppendOutcomeUnknownError("no confirmation in time", self.confirmed)


@pytest.mark.parametrize(("confirmed", "expected"), [(None, 2), (1, 3)])
def test_an_append_that_reached_the_main_log_only_is_of_unknown_outcome(
    tmp_path: Path, confirmed: int | None, expected: int
) -> None:
    s = settings(tmp_path)
    log = IngestLog(open_log(s), Failing(open_impressions_log(s), confirmed))
    with log:
        log.ensure_topic()
        with pytest.raises(SendInterruptedError) as info:
            send_events(log, [view(1), shown(1), view(2), shown(2)], RULES)
    result = info.value.result
    assert info.value.outcome_unknown  # resend the batch under the same ids: never "nothing appended"
    assert [(r.outcome, r.confirmed) for r in result.ranges] == [("unknown", expected)]


def test_an_impressions_only_append_that_fails_says_nothing_was_appended(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with IngestLog(open_log(s), Failing(open_impressions_log(s), None)) as log:
        log.ensure_topic()
        with pytest.raises(SendInterruptedError) as info:
            send_events(log, [shown(1), shown(2)], RULES)
    assert not info.value.outcome_unknown
    assert [r.outcome for r in info.value.result.ranges] == ["not_sent"]


def test_without_an_impressions_topic_producers_append_to_the_main_log_alone(tmp_path: Path) -> None:
    s = Settings.load(overrides={"log": {"url": f"sqlite:///{tmp_path}/events"}})
    with open_ingest_log(s) as log:
        assert not isinstance(log, IngestLog)
        log.ensure_topic()
        send_events(log, [view(1), shown(1)], RULES)
        assert len(values(log)) == 2
    assert not (tmp_path / "events" / "shown").exists()


def test_events_dead_letters_impressions_shows_the_impressions_log_dead_letters(tmp_path: Path) -> None:
    config = tmp_path / "lambdarec.toml"
    config.write_text(
        f'[log]\nurl = "sqlite:///{tmp_path}/events"\nimpressions_topic = "shown"\n'
        "[speed.feedback]\nown_consumer = true\n"
    )
    with open_impressions_log(settings(tmp_path)) as own:
        own.dead_letter(b'{"event_type": "impression"}', "missing field 'user_id'", (1, 7))
    shown = CliRunner().invoke(app, ["events", "dead-letters", "--impressions", "--json", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert [(d["source"], d["reason"]) for d in json.loads(shown.output)] == [([1, 7], "missing field 'user_id'")]
    main = CliRunner().invoke(app, ["events", "dead-letters", "--json", "--config", str(config)])
    assert json.loads(main.output) == []
    config.write_text(f'[log]\nurl = "sqlite:///{tmp_path}/events"\n')
    unset = CliRunner().invoke(app, ["events", "dead-letters", "--impressions", "--config", str(config)])
    assert unset.exit_code == 2 and "needs log.impressions_topic" in unset.output
