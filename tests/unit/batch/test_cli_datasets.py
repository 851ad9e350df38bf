"""``lambdarec datasets``: through the root CLI in-process, and once as a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lambdarec.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["datasets", *args])


def test_import_writes_a_parquet_log(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t5\t881250950\n")
    result = invoke("import", "ml-100k", str(tmp_path / "u.data"), "--out", str(tmp_path / "out" / "ml.parquet"))
    assert result.exit_code == 0, result.output
    assert "wrote 2 ratings (2 users, 1 items)" in result.output
    assert pl.read_parquet(tmp_path / "out" / "ml.parquet")["weight"].to_list() == [4.0, 5.0]


def test_import_of_a_bad_file_exits_2_naming_the_line(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\n")
    result = invoke("import", "ml-100k", str(tmp_path / "u.data"), "--out", str(tmp_path / "ml.parquet"))
    assert result.exit_code == 2
    assert "line 2: it has the wrong number of fields" in result.output
    assert not (tmp_path / "ml.parquet").exists()


def test_synth_writes_the_log_and_a_summary(tmp_path):
    out = tmp_path / "synth.parquet"
    result = invoke(
        "synth", "--users", "30", "--items", "40", "--events", "2000", "--out", str(out),
        "--seed", "9", "--days", "7", "--start", "2024-03-01", "--drift-after-fraction", "0.5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["events"] == 2000
    assert printed["spec"]["drift_at"] == "2024-03-04T12:00:00+00:00"
    assert printed["first"].startswith("2024-03-0")
    assert json.loads(out.with_suffix(".summary.json").read_text())["events"] == 2000
    assert pl.read_parquet(out).height == 2000


def test_synth_refuses_two_drift_options(tmp_path):
    result = invoke(
        "synth", "--users", "3", "--items", "4", "--events", "20", "--out", str(tmp_path / "s.parquet"),
        "--drift-at", "2024-01-05", "--drift-after-fraction", "0.5",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "not both" in result.output


def test_synth_seed_defaults_to_the_batch_seed(tmp_path, monkeypatch):
    args = ["synth", "--users", "5", "--items", "6", "--events", "50", "--json"]
    monkeypatch.setenv("LAMBDAREC_BATCH__SEED", "77")
    first = invoke(*args, "--out", str(tmp_path / "a.parquet"))
    explicit = invoke(*args, "--out", str(tmp_path / "b.parquet"), "--seed", "77")
    assert json.loads(first.stdout)["spec"]["seed"] == 77
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert explicit.exit_code == 0


def test_check_reports_bad_rows_by_reason(tmp_path):
    (tmp_path / "log.csv").write_text(
        "user_id,item_id,timestamp,event_type\nu,a,1704067200,view\nu,a,1704067200,zap\n,a,1704067200,view\n"
    )
    result = invoke("check", str(tmp_path / "log.csv"), "--as-of", "2024-01-02", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_kept"] == 1
    assert report["bad_rows"] == {"missing_user_id": 1, "unknown_event_type": 1}


def test_check_with_fail_mode_exits_2_naming_the_row(tmp_path, monkeypatch):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\nu,a,1704067200\nu,a,never\n")
    monkeypatch.setenv("LAMBDAREC_BATCH__ON_BAD_ROWS", "fail")
    result = invoke("check", str(tmp_path / "log.csv"), "--as-of", "2024-01-02")
    assert result.exit_code == 2
    assert "row 2 (line 3): the timestamp is not a datetime" in result.output


def test_check_of_a_log_missing_a_column_exits_2(tmp_path):
    pl.DataFrame({"user_id": ["u"], "when": [1]}).write_parquet(tmp_path / "log.parquet")
    result = invoke("check", str(tmp_path / "log.parquet"))
    assert result.exit_code == 2
    assert "no column 'item_id'" in result.output
    assert "available columns: user_id, when" in result.output


def test_fetch_of_an_unknown_dataset_exits_2():
    result = invoke("fetch", "ml-25m")
    assert result.exit_code == 2
    assert "only ml-100k" in result.output


def _lambdarec() -> str:
    script = Path(sys.executable).parent / "lambdarec"
    found = str(script) if script.exists() else shutil.which("lambdarec")
    if found is None:
        pytest.fail("the lambdarec console script is not installed; run `make setup`")
    return found


def test_synth_as_a_real_command(tmp_path):
    out = tmp_path / "events.csv"
    proc = subprocess.run(
        [_lambdarec(), "datasets", "synth", "--users", "20", "--items", "30", "--events", "500", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 500 events (20 users" in proc.stdout
    assert pl.read_csv(out).height == 500
    assert (tmp_path / "events.summary.json").exists()
