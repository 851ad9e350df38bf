"""``lambdarec events send`` and ``dead-letters`` on the embedded SQLite log."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.eventlog import open_log
from lambdarec.settings import LogSettings

runner = CliRunner()


def event_line(i: int) -> str:
    ev = {"event_id": f"e{i}", "user_id": f"u{i}", "item_id": "i1", "event_type": "view", "timestamp": time.time()}
    return json.dumps(ev)


def test_send_appends_good_lines_reports_bad_ones_by_line_number_and_exits_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log"
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join([event_line(1), "", "{oops", event_line(2), '{"event_id": "e3"}', ""]) + "\n")
    result = runner.invoke(app, ["events", "send", str(src), "--log", url, "--json"])
    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["accepted"], out["rejected"]) == (2, 2)
    assert [r["line"] for r in out["rejections"]] == [3, 5]
    assert out["rejections"][1]["reason"] == "missing field 'user_id'"
    with open_log(LogSettings(url=url)) as log:
        assert sum(log.end_offsets().values()) == 2


def test_send_reads_stdin_and_exits_0_when_every_line_is_good(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log"
    result = runner.invoke(app, ["events", "send", "-", "--log", url], input=f"{event_line(1)}\n{event_line(2)}\n")
    assert result.exit_code == 0, result.output
    assert "appended 2, rejected 0" in result.stdout


def test_send_names_a_missing_file_and_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["events", "send", str(tmp_path / "nope.jsonl"), "--log", f"sqlite:///{tmp_path}/l"])
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output


def test_dead_letters_shows_reason_source_and_original_bytes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log"
    with open_log(LogSettings(url=url)) as log:
        log.dead_letter(b"\xffbroken", "not JSON: invalid character", source=(1, 7))
    result = runner.invoke(app, ["events", "dead-letters", "--log", url, "--json", "--limit", "5"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["reason"], row["source"], row["value_b64"]) == ("not JSON: invalid character", [1, 7], "/2Jyb2tlbg==")
    human = runner.invoke(app, ["events", "dead-letters", "--log", url])
    assert "partition 1 offset 7  not JSON: invalid character" in human.stdout
