"""The nightly job on a log whose events all fall outside its window: the error says why in dates and names the
flag and the setting that fix it (issue 18 item 2: it printed raw epoch milliseconds and no hint)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from lambdarec.cli import app

from .conftest import T0_S

runner = CliRunner()


def _log(tmp_path: Path) -> Path:
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"], "timestamp": [T0_S, T0_S + 60, T0_S + 3600]}
    ).write_parquet(path)
    return path


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["batch", "run", "--interactions", str(_log(tmp_path)), "--store", f"sqlite:///{tmp_path}/store", *args],
        env={"LAMBDAREC_BATCH__LOOKBACK_DAYS": "30"},
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return result.exit_code, "\n".join(errors) or result.stderr  # the message, not the JSON log lines


def test_a_log_older_than_the_window_names_as_of_and_the_lookback_in_dates(tmp_path: Path) -> None:
    code, err = _run(tmp_path, "--as-of", "2026-06-01T00:00:00Z")
    assert code == 2, err
    assert "3 older than the window" in err
    assert "batch.lookback_days" in err and "--as-of" in err
    assert "2026-05-02T00:00:00Z" in err  # the window's start: --as-of minus 30 days, as a date
    assert "2024-01-10T12:00:00Z" in err and "2024-01-10T13:00:00Z" in err  # the log's own span
    assert "--as-of 2024-01-10T13:00:00Z" in err  # a cut-off that would keep every event
    assert not re.search(r"\d{12,}", err), err  # no raw epoch milliseconds


def test_a_log_newer_than_as_of_says_so(tmp_path: Path) -> None:
    code, err = _run(tmp_path, "--as-of", "2020-01-01T00:00:00Z")
    assert code == 2, err
    assert "3 later than --as-of 2020-01-01T00:00:00Z" in err
    assert not re.search(r"\d{12,}", err), err
