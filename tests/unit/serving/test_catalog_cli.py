"""`lambdarec items import` (JSON lines, CSV, parquet; a report by line; exit codes), `lambdarec items show`,
and `lambdarec recommend` with the catalog's rules and the request filters (the same body as the GET endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.store import open_store
from tests.unit.serving.conftest import serving, wait_for

runner = CliRunner()


def _config(tmp_path: Path, settings) -> Path:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "lambdarec.toml"
    cfg.write_text(f'[store]\nurl = "{settings.store.url}"\n[log]\nurl = "{settings.log.url}"\n'
                   "[serving]\ncatalog_poll_s = 0.1\n")  # fmt: skip
    return cfg


def test_import_json_lines_reports_refusals_by_line_and_upserts_the_rest(fresh_store, tmp_path: Path) -> None:
    settings, _ = fresh_store
    items = tmp_path / "items.jsonl"
    last = {"item_id": "c", "attributes": {"brand": "acme"}, "expires_at": "2030-01-01T00:00:00Z"}
    items.write_text('{"item_id": "a", "available": false}\n\n{oops\n{"item_id": "b", "categories": "x"}\n'
                     + json.dumps(last) + "\n")  # fmt: skip
    result = runner.invoke(app, ["items", "import", str(items), "--json", "--config", str(_config(tmp_path, settings))])
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert (report["accepted"], report["rejected"]) == (2, 2)
    assert [(r["line"], r["reason"][:8]) for r in report["rejections"]] == [(3, "not JSON"), (4, "field 'c")]
    shown = runner.invoke(app, ["items", "show", "c", "--config", str(_config(tmp_path, settings))])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["expires_at"] == "2030-01-01T00:00:00Z"
    assert runner.invoke(app, ["items", "show", "zz", "--config", str(_config(tmp_path, settings))]).exit_code == 2
    again = runner.invoke(app, ["items", "import", str(items), "--resume-from", "5", "--json",
                                "--config", str(_config(tmp_path, settings))])  # fmt: skip
    assert again.exit_code == 0 and json.loads(again.stdout)["accepted"] == 1


def test_import_csv_and_parquet(fresh_store, tmp_path: Path) -> None:
    settings, _ = fresh_store
    cfg = _config(tmp_path, settings)
    csv = tmp_path / "items.csv"
    csv.write_text("item_id,available,categories,brand,price\nd,false,shoes|sale,acme,49.5\ne,,hats,,3\n")
    assert runner.invoke(app, ["items", "import", str(csv), "--config", str(cfg)]).exit_code == 0
    parquet = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["f"], "available": [True], "categories": [["toys"]], "colour": ["red"]}).write_parquet(
        parquet
    )
    assert runner.invoke(app, ["items", "import", str(parquet), "--config", str(cfg)]).exit_code == 0
    with open_store(settings) as store:
        got = store.read_catalog(["d", "e", "f"])
    d = got["d"]
    assert (d.available, d.categories, d.attributes) == (False, ("shoes", "sale"), {"brand": "acme", "price": 49.5})
    assert (got["e"].available, got["e"].categories, got["e"].attributes) == (True, ("hats",), {"price": 3})
    assert (got["f"].categories, got["f"].attributes) == (("toys",), {"colour": "red"})
    bad = runner.invoke(app, ["items", "import", str(csv), "--format", "xml", "--config", str(cfg)])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_recommend_applies_the_rules_and_filters_as_the_endpoint_does(fresh_store, tmp_path: Path) -> None:
    settings, version = fresh_store
    cfg = _config(tmp_path, settings)
    with open_store(settings) as store:
        model_items = [str(i) for i in store.read_array(version, "item_ids").tolist()]
    lines = [json.dumps({"item_id": i, "categories": ["odd" if n % 2 else "even"], "attributes": {"n": n}})
             for n, i in enumerate(model_items)]  # fmt: skip
    (tmp_path / "all.jsonl").write_text("\n".join(lines) + "\n")
    assert runner.invoke(app, ["items", "import", str(tmp_path / "all.jsonl"), "--config", str(cfg)]).exit_code == 0
    args = ["recommend", "u4", "--k", "6", "--categories", "odd", "--filter", "n>=20", "--explain", "--json"]
    result = runner.invoke(app, [*args, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert len(cli["items"]) == 6
    assert all(model_items.index(i["item_id"]) % 2 == 1 and model_items.index(i["item_id"]) >= 20 for i in cli["items"])
    with serving(settings) as client:
        wait_for(lambda: client.app.state.service.catalog.loaded, "the catalog")
        params = {"k": 6, "categories": "odd", "filter": "n>=20", "explain": "true"}
        assert client.get("/v1/users/u4/recommendations", params=params).json() == cli
    bad = runner.invoke(app, ["recommend", "u4", "--filter", "n>>2", "--config", str(cfg)])
    assert bad.exit_code == 2 and "character 3" in bad.output
