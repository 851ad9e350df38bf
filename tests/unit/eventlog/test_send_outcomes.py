"""Honest ingestion: an append whose outcome is unknown is reported as unknown, per line range, never as
"nothing was appended"; ``events send`` says where to resume, and lines no rule foresaw are refused, not fatal.

The log is the real embedded SQLite log behind a hook that fails one append, after or before it reaches the
log, as a broker that dies mid-flush does (the same on a real Kafka broker killed for real: ``tests/chaos``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lambdarec.eventlog as log_module
from lambdarec.cli import app
from lambdarec.eventlog import AppendOutcomeUnknownError, EventLogUnavailableError, SendInterruptedError, send_events
from lambdarec.eventlog import open_log as real_open_log
from lambdarec.events import EventRules
from lambdarec.settings import LogSettings

runner = CliRunner()
RULES = EventRules(known_types=frozenset({"view"}), max_bytes=16384, future_tolerance_s=300.0)


def line(i: int, **extra: object) -> str:
    ev = {"event_id": f"e{i}", "user_id": f"u{i % 7}", "item_id": "i1", "event_type": "view",
          "timestamp": time.time() - 60}  # fmt: skip
    return json.dumps({**ev, **extra})


class FailingAt:
    """The real log; its ``fail_at``-th append (1-based) fails. ``appended_first``: the events reach the log
    before the error (outcome unknown), else they never do (nothing appended)."""

    def __init__(self, log, fail_at: int, appended_first: bool):  # type: ignore[no-untyped-def]
        self.log, self.fail_at, self.appended_first, self.calls = log, fail_at, appended_first, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.log, name)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.close()

    def append(self, events, keys=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls != self.fail_at:
            return self.log.append(events, keys)
        if self.appended_first:
            self.log.append(events, keys)
            raise AppendOutcomeUnknownError("test: the broker died before confirming", confirmed=0)
        raise EventLogUnavailableError("test: no broker answers")


def count(url: str) -> list[str]:
    with real_open_log(LogSettings(url=url)) as log, log.consumer("count") as consumer:
        return [json.loads(r.value)["event_id"] for r in consumer.poll(max_records=100_000, timeout_ms=0)]


@pytest.mark.parametrize("appended_first", [True, False], ids=["unknown", "not-sent"])
def test_send_events_reports_each_batch_and_where_to_resume(tmp_path: Path, appended_first: bool) -> None:
    with real_open_log(LogSettings(url=f"sqlite:///{tmp_path}/log")) as real:
        log = FailingAt(real, fail_at=3, appended_first=appended_first)
        with pytest.raises(SendInterruptedError) as caught:
            send_events(log, [line(i) for i in range(50)], RULES, batch=10)
    result = caught.value.result
    assert caught.value.outcome_unknown is appended_first
    assert [(r.first, r.last, r.outcome) for r in result.ranges] == [
        (0, 9, "appended"), (10, 19, "appended"), (20, 29, "unknown" if appended_first else "not_sent")
    ]  # fmt: skip
    assert result.accepted == 20 and result.first_unconfirmed == 20
    assert result.unknown == (10 if appended_first else 0)


def test_events_send_reports_ranges_exits_1_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a traceback ("KafkaTimeoutError: Timeout waiting for future") and nothing on stdout.
    url = f"sqlite:///{tmp_path}/log"
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join(line(i) for i in range(2500)) + "\n")
    monkeypatch.setattr(log_module, "open_log", lambda s: FailingAt(real_open_log(s), 2, appended_first=True))
    result = runner.invoke(app, ["events", "send", str(src), "--log", url, "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["complete"] is False and "broker died" in report["error"]
    assert [(r["lines"], r["outcome"]) for r in report["ranges"]] == [
        ([1, 1000], "appended"), ([1001, 2000], "unknown"), ([2001, None], "not_sent")
    ]  # fmt: skip
    assert report["first_unconfirmed_line"] == 1001 and report["accepted"] == 1000 and report["unknown"] == 1000
    human = runner.invoke(app, ["events", "send", str(src), "--log", f"sqlite:///{tmp_path}/other"])
    assert human.exit_code == 1
    assert "lines 1001-2000: outcome unknown" in human.stderr and "--resume-from 1001" in human.stderr
    assert "Traceback" not in human.output

    monkeypatch.setattr(log_module, "open_log", real_open_log)
    resumed = runner.invoke(app, ["events", "send", str(src), "--log", url, "--resume-from", "1001", "--json"])
    assert resumed.exit_code == 0, resumed.output
    again = json.loads(resumed.stdout)
    assert again["accepted"] == 1500 and again["first_unconfirmed_line"] is None
    assert again["ranges"][0]["lines"] == [1001, 2000]
    ids = count(url)
    assert set(ids) == {f"e{i}" for i in range(2500)}  # nothing lost; 1001-2000 twice, the same event ids
    assert len(ids) == 3500


def test_lines_no_rule_foresaw_are_refused_with_reasons_and_the_rest_appended(tmp_path: Path) -> None:
    # Before: "timestamp": 1e30 ended the command with an OverflowError traceback.
    url = f"sqlite:///{tmp_path}/log"
    src = tmp_path / "events.jsonl"
    nested = line(3)[:-1] + ', "context": {"x": ' + "[" * 2000 + "]" * 2000 + "}}"
    src.write_text("\n".join([line(1), line(2, timestamp=1e30), '{"a": ' + "[" * 7000 + "]" * 7000 + "}",
                              nested, line(4)]) + "\n")  # fmt: skip
    result = runner.invoke(app, ["events", "send", str(src), "--log", url, "--json"])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] == 2 and report["rejected"] == 3
    reasons = {r["line"]: r["reason"] for r in report["rejections"]}
    assert set(reasons) == {2, 3, 4} and all(reasons.values())
    assert sorted(count(url)) == ["e1", "e4"]


def test_a_log_that_cannot_be_reached_is_reported_as_nothing_sent_from_the_resume_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join(line(i) for i in range(30)) + "\n")
    result = runner.invoke(
        app,
        ["events", "send", str(src), "--log", f"kafka://127.0.0.1:{dead}/t", "--json", "--resume-from", "11"],
        env={"LAMBDAREC_LOG__REQUEST_TIMEOUT_MS": "1000"},
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["complete"] is False and report["first_unconfirmed_line"] == 11 and str(dead) in report["error"]
    assert report["ranges"] == [{"lines": [11, None], "outcome": "not_sent", "events": None}]
