"""The lambdarec command: help, config show, and groups that are not built yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from lambdarec.cli import GROUPS, app

runner = CliRunner()
EXPECTED_GROUPS = {
    "demo",
    "datasets",
    "batch",
    "snapshots",
    "events",
    "speed",
    "serve",
    "recommend",
    "replay",
    "config",
    "archive",
    "lake",
    "forget",
}


def test_help_lists_every_group() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in EXPECTED_GROUPS:
        assert name in result.output


def test_config_show_json_is_the_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nurl = "cassandra://u:secret@h:9042/ks"\n[batch]\nfactors = 16\n')
    result = runner.invoke(app, ["config", "show", "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"store", "log", "batch", "speed", "serving", "lake", "archive"}
    assert data["batch"]["factors"] == 16
    assert data["store"]["url"] == "cassandra://u:***@h:9042/ks"


def test_config_show_rejects_unknown_key_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[serving]\nprot = 1\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "serving.prot" in result.output


def test_every_group_answers_help() -> None:
    for name in GROUPS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output


def test_console_script_runs_without_heavy_imports() -> None:
    code = (
        "import sys; from lambdarec.cli import app\n"
        "try:\n    app(['config', 'show', '--json'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'faiss', 'implicit', 'polars') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr
