"""``lambdarec replay`` and ``lambdarec replay tune``: the group's default command, flags and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from replay.protocol import parse_period

runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that rich does not cut flag names


def test_replay_runs_by_default_and_tune_is_a_subcommand() -> None:
    out = runner.invoke(app, ["replay", "--help"])
    assert out.exit_code == 0, out.output
    for flag in (
        "--split-at",
        "--until",
        "--variants",
        "--sample",
        "--report",
        "--rebatch-every",
        "--fresh-boost",
        "tune",
    ):
        assert flag in out.output
    tune = runner.invoke(app, ["replay", "tune", "--help"])
    assert tune.exit_code == 0, tune.output
    assert "--validation-until" in tune.output and "--trials" in tune.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split-at", "2024-01-01"], "--interactions is required"),
        (["-i", "log.parquet"], "--split-at is required"),
        (["-i", "log.parquet", "--split-at", "yesterday"], "--split-at 'yesterday'"),
        (["-i", "log.parquet", "--split-at", "2024-01-01", "--k", "ten"], "--k 'ten'"),
        (["-i", "log.parquet", "--split-at", "2024-01-01", "--variants", "best"], "unknown variant"),
        (["-i", "log.parquet", "--split-at", "2024-01-01", "--rebatch-every", "often"], "period 'often'"),
        (["-i", "log.parquet", "--split-at", "2024-01-02", "--until", "2024-01-01"], "must be after the split"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], message: str) -> None:
    out = runner.invoke(app, ["replay", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output


def test_a_missing_log_exits_2(tmp_path: Path) -> None:
    out = runner.invoke(app, ["replay", "-i", str(tmp_path / "none.parquet"), "--split-at", "2024-01-01"])
    assert out.exit_code == 2
    assert "does not exist" in out.output


def test_tune_needs_an_ordered_window() -> None:
    args = ["replay", "tune", "-i", "log.parquet", "--split-at", "2024-01-02", "--validation-until", "2024-01-01"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2
    assert "--validation-until must be after --split-at" in out.output


def test_parse_period() -> None:
    assert parse_period("1d") == 86400.0
    assert parse_period("12h") == 43200.0
    assert parse_period("30m") == 1800.0
    assert parse_period("45") == 45.0
    with pytest.raises(ValueError, match="must be > 0"):
        parse_period("0h")
