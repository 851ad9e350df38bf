"""``lambdarec batch tune`` on a tiny log: trials, the best parameters, --apply, and the nightly's re-use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batch_layer.interactions import read_interactions
from batch_layer.synth import SynthSpec, synthesize
from batch_layer.tune import nightly_settings
from lambdarec.cli import app
from lambdarec.settings import BatchSettings, Settings

runner = CliRunner()
FAST = {"threads": 1, "device": "cpu"}
MODELS = ["als", "bpr"]


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "log.parquet"
    synthesize(SynthSpec(users=300, items=150, events=12_000, seed=5, days=10)).events.write_parquet(path)
    return path


def test_tune_prints_trials_and_applies_the_best_to_a_settings_file(tiny_log: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        '# ours\n[batch]\nthreads = 1\ndevice = "cpu"\n[batch.tune]\nmodels = ["als", "bpr"]\n'
        "[serving]\nweight_session = 0.7\n"
    )
    out = runner.invoke(
        app,
        [
            "batch",
            "tune",
            "-i",
            str(tiny_log),
            "--trials",
            "5",
            "--budget-s",
            "120",
            "--json",
            "--apply",
            str(config),
            "--config",
            str(config),
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    assert 1 <= len(doc["trials"]) <= 5 and doc["validation"]["users"] > 10
    first = doc["trials"][0]
    assert first["params"]["model"] == "als" and first["params"]["regularization"] == 50.0  # the current settings
    finished = [t["value"] for t in doc["trials"] if t["state"] == "complete"]
    assert doc["value"] == max(finished) >= doc["current_settings_value"]
    assert set(doc["validation"]["models"]) == {"als", "bpr"}
    tuned = Settings.load(config)
    assert tuned.batch.train.model == doc["params"]["model"] and tuned.batch.train.factors == doc["params"]["factors"]
    assert tuned.serving.weight_session == 0.7 and tuned.batch.threads == 1  # the rest of the file is kept
    assert config.read_text().startswith("# ours")


def test_the_same_seed_gives_the_same_search(tiny_log: Path) -> None:
    batch = BatchSettings(**FAST, tune={"models": MODELS, "trials": 3})
    frame, _ = read_interactions(tiny_log, batch)
    from batch_layer.tune import tune

    a, b = tune(frame, batch), tune(frame, batch)
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert a.best_value == pytest.approx(b.best_value, rel=1e-3)


def test_the_nightly_reuses_a_recent_tuning_and_retunes_an_old_one(tiny_log: Path) -> None:
    batch = BatchSettings(**FAST, tune={"models": MODELS, "every_days": 7, "trials": 2})
    frame, report = read_interactions(tiny_log, batch)
    as_of = datetime.fromtimestamp(report.as_of_ms / 1000, UTC)
    last = {"at": (as_of - timedelta(days=2)).isoformat(), "params": {"model": "als", "factors": 16, "alpha": 1.0}}
    used, record = nightly_settings(frame, batch, {"version": "v1", "tuning": last}, as_of)
    assert used.train.factors == 16 and used.train.alpha == 1.0 and record["reused_from"] == "v1"
    last["at"] = (as_of - timedelta(days=8)).isoformat()
    used, record = nightly_settings(frame, batch, {"version": "v1", "tuning": last}, as_of)
    assert "reused_from" not in record and record["at"] == as_of.isoformat()
    assert used.train.factors == record["params"]["factors"]
    off, none = nightly_settings(
        frame, batch.model_copy(update={"tune": batch.tune.model_copy(update={"every_days": None})}), None, as_of
    )
    assert none is None and off.train.factors == 64
