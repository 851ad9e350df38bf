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
    "experiments",
}


def test_help_lists_every_group() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in EXPECTED_GROUPS:
        assert name in result.output


def test_config_show_json_is_the_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nurl = "cassandra://u:secret@h:9042/ks"\n[batch.train]\nfactors = 16\n')
    result = runner.invoke(app, ["config", "show", "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"store", "log", "batch", "speed", "serving", "events", "lake", "archive", "experiments"}
    assert data["batch"]["train"]["factors"] == 16
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
        "heavy = [m for m in ('torch', 'faiss', 'implicit', 'polars', 'numba') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr


def _show(*args: str) -> str:
    result = runner.invoke(app, ["config", "show", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_config_show_output_loads_back_as_the_same_settings(tmp_path: Path) -> None:
    """Issue 18 item 5: `config show` used to print `username = null`, which no TOML parser accepts."""
    from lambdarec.settings import Settings

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[store]\nurl = "cassandra://h1,h2:9042/recs?dc=datacenter1"\n'
        "[store.cassandra]\nreplication = { datacenter1 = 3 }\n"
        '[log]\nurl = "kafka://k1:9092/shop-events"\npartitions = 6\n'
        "[batch]\nlookback_days = 30.5\n[batch.train]\nfactors = 16\n[batch.event_weights]\nview = 1.0\nbuy = 8.0\n"
        '[serving]\nweight_session = 0.25\ningest_key_hashes = ["' + "a" * 64 + '"]\n'
    )
    for cfg_path in (None, cfg):  # the defaults, and a file that sets nested tables, lists and floats
        shown = _show(*(["--config", str(cfg_path)] if cfg_path else []))
        again = tmp_path / "shown.toml"
        again.write_text(shown)
        original = Settings.load(cfg_path)
        reloaded = Settings.load(again)
        assert reloaded.model_dump() == original.model_dump()
        assert _show("--config", str(again)) == shown  # and it is a fixed point


def test_config_show_never_prints_a_secret_that_would_load_back_as_asterisks(tmp_path: Path) -> None:
    import tomllib

    cfg = tmp_path / "c.toml"
    cfg.write_text('[store.cassandra]\nusername = "svc"\npassword = "hunter2"\n')
    shown = _show("--config", str(cfg))
    assert "hunter2" not in shown
    data = tomllib.loads(shown)
    assert data["store"]["cassandra"]["username"] == "svc"
    assert "password" not in data["store"]["cassandra"]  # a loaded-back "**********" would be a wrong password
    assert "LAMBDAREC_STORE__CASSANDRA__PASSWORD" in shown  # the comment says where the secret comes from
    defaults = _show()
    assert "null" not in defaults
    assert "# cassandra.username: unset" in defaults  # unset fields are comments, not `null`
