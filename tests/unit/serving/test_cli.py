"""`lambdarec recommend` (the same body as the GET endpoint) and `lambdarec serve hash-key`."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lambdarec.cli import app
from serving_layer.auth import hash_key
from tests.unit.serving.conftest import make_settings

runner = CliRunner()


def _cli_config(tmp_path: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "serving.toml"
    cfg.write_text(f'[store]\nurl = "{settings.store.url}"\n[log]\nurl = "{settings.log.url}"\n')
    return cfg


def test_recommend_json_is_the_get_endpoint_body(client: TestClient, published, tmp_path: Path) -> None:
    settings, version = published
    cfg = _cli_config(tmp_path, settings)
    args = ["recommend", "u4", "--session", "i2,i6", "--k", "6", "--explain", "--json", "--config", str(cfg)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    http = client.get("/v1/users/u4/recommendations", params={"session_items": "i2,i6", "k": 6, "explain": "true"})
    assert cli == http.json()
    assert cli["snapshot"] == version


def test_recommend_human_output_and_bad_k(published, tmp_path: Path) -> None:
    settings, _ = published
    cfg = _cli_config(tmp_path, settings)
    result = runner.invoke(app, ["recommend", "u4", "--k", "3", "--explain", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 4 and "picked for you" in result.stdout
    bad = runner.invoke(app, ["recommend", "u4", "--k", "0", "--config", str(cfg)])
    assert bad.exit_code == 2 and "between 1 and 100" in bad.output


def test_recommend_before_any_snapshot_exits_1(tmp_path: Path) -> None:
    cfg = _cli_config(tmp_path, make_settings(tmp_path))
    result = runner.invoke(app, ["recommend", "u1", "--config", str(cfg)])
    assert result.exit_code == 1 and "no published snapshot" in result.output


def test_hash_key_prints_the_digest_settings_expect() -> None:
    result = runner.invoke(app, ["serve", "hash-key", "s3cret"])
    assert result.exit_code == 0 and result.stdout.strip() == hash_key("s3cret")
    piped = runner.invoke(app, ["serve", "hash-key", "-"], input="s3cret\n")
    assert piped.stdout.strip() == hash_key("s3cret")
    made = json.loads(runner.invoke(app, ["serve", "new-key", "--json"]).stdout)
    assert made["sha256"] == hash_key(made["key"])
