"""The nightly job end to end on the embedded store: publish, no-op rerun, gate, lock, bad input, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batch_layer.synth import SynthSpec, synthesize
from lambdarec.cli import app
from lambdarec.settings import Settings
from lambdarec.store import open_store

AS_OF = "2024-02-01T00:00:00Z"
runner = CliRunner()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "log.parquet"
    synthesize(SynthSpec(users=3000, items=800, events=120_000, seed=7)).events.write_parquet(path)
    return path


def batch(store_url: str, *args: str) -> tuple[int, dict]:
    result = runner.invoke(
        app, ["batch", "run", "--store", store_url, "--as-of", AS_OF, "--no-progress", "--json", *args]
    )
    body = result.stdout[result.stdout.index("{") :] if "{" in result.stdout else "{}"
    return result.exit_code, json.loads(body)


def test_publishes_then_rerun_is_a_noop(tmp_path: Path, log_file: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    code, m = batch(url, "-i", str(log_file))
    assert code == 0, m
    assert m["published"] is True
    assert m["counts"]["users"] == 3000 and m["counts"]["interactions"] == 120_000
    assert set(m["timings_s"]) >= {"load", "gate", "fit", "candidates", "write", "publish"}
    model, pop = m["metrics"]["model"], m["metrics"]["popularity"]
    assert model["recall@10"] > pop["recall@10"]
    assert {"recall@10", "ndcg@10"} <= set(model)
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.current_version() == m["version"]
        row = store.read_user(m["version"], "u0") or next(iter(store.read_users(m["version"], ["u1", "u2"]).values()))
        assert len(row.candidates) == 200 and not set(row.candidates.tolist()) & set(row.history.tolist())

    code, again = batch(url, "-i", str(log_file))
    assert code == 0 and again["published"] is False and again["version"] == m["version"]
    code, forced = batch(url, "-i", str(log_file), "--force")
    assert code == 0 and forced["published"] is True and forced["version"] != m["version"]


WEAK_MODEL = {"LAMBDAREC_BATCH__TRAIN__FACTORS": "2", "LAMBDAREC_BATCH__TRAIN__ITERATIONS": "1"}  # far below popularity


@pytest.fixture
def weak_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in WEAK_MODEL.items():
        monkeypatch.setenv(key, value)


def test_quality_gate_refuses_a_model_below_popularity_with_exit_3(
    tmp_path: Path, log_file: Path, weak_model: None
) -> None:
    """No snapshot yet: popularity alone is the bar, and a 2-factor model does not clear it."""
    url = f"sqlite:///{tmp_path}/store"
    result = runner.invoke(
        app, ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF, "--no-progress"]
    )
    assert result.exit_code == 3, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("error: quality gate refused"))
    assert "vs popularity ndcg@10" in line and "batch.gate.min_lift_vs_popular 1.1: FAIL" in line
    assert "vs current snapshot: not compared (no current snapshot)" in line  # both comparisons, one line
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.current_version(max_age_s=0) is None
    code, body = batch(url, "-i", str(log_file))
    assert code == 3 and body["published"] is False
    assert body["gate"]["checks"]["popularity"]["passed"] is False
    assert body["gate"]["checks"]["popularity"]["lift"] < 1.0
    assert body["metrics"]["model"]["ndcg@10"] < body["metrics"]["popularity"]["ndcg@10"]


def test_force_publishes_a_refused_model_and_records_it(tmp_path: Path, log_file: Path, weak_model: None) -> None:
    url = f"sqlite:///{tmp_path}/store"
    code, m = batch(url, "-i", str(log_file), "--force")
    assert code == 0 and m["published"] is True
    assert m["gate"]["passed"] is False and m["gate"]["forced"] is True
    assert "refused, published anyway (--force)" in m["gate"]["line"]
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.get_snapshot(m["version"]).manifest["gate"]["forced"] is True


def test_quality_gate_compares_with_the_current_model_rescored_on_the_same_holdout(
    tmp_path: Path, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The current snapshot (data to Jan 25) is re-scored on today's held-out events after its data."""
    url = f"sqlite:///{tmp_path}/store"
    code, first = batch(url, "-i", str(log_file), "--as-of", "2024-01-25T00:00:00Z")
    assert code == 0, first
    for key, value in WEAK_MODEL.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LAMBDAREC_BATCH__GATE__MIN_LIFT_VS_POPULAR", "0")  # only the comparison with current
    code, body = batch(url, "-i", str(log_file))
    assert code == 3, body
    cur = body["metrics"]["current"]
    assert cur["version"] == first["version"] and cur["users"] > 100
    assert cur["after_ms"] == first["window"]["last_event_ms"]
    assert cur["model"]["ndcg@10"] < cur["current"]["ndcg@10"] * 0.9
    assert body["gate"]["checks"]["current"]["passed"] is False
    assert body["gate"]["checks"]["popularity"]["passed"] is True
    assert f"vs current snapshot {first['version']} re-scored on the same holdout" in body["error"]
    monkeypatch.delenv("LAMBDAREC_BATCH__TRAIN__FACTORS")
    monkeypatch.delenv("LAMBDAREC_BATCH__TRAIN__ITERATIONS")
    code, good = batch(url, "-i", str(log_file))
    assert code == 0 and good["gate"]["passed"] is True, good.get("error")
    assert good["gate"]["checks"]["current"]["change"] > -0.1


def test_lookback_that_drops_most_events_warns_naming_the_setting(tmp_path: Path, log_file: Path) -> None:
    """30 days of events, a 12-day lookback: the job publishes but warns in the log, --json and the manifest."""
    url = f"sqlite:///{tmp_path}/store"
    result = runner.invoke(
        app,
        ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF, "--no-progress", "--json"],
        env={"LAMBDAREC_BATCH__LOOKBACK_DAYS": "12"},
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{") :])
    (warning,) = body["warnings"]
    assert warning["setting"] == "batch.lookback_days" and warning["share"] > 0.5
    assert "batch.lookback_days = 12" in warning["message"]
    assert "batch.data_loss" in result.stderr  # the structured log line
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.get_snapshot(body["version"]).manifest["warnings"] == body["warnings"]
    human = runner.invoke(
        app,
        ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF, "--no-progress", "--force"],
        env={"LAMBDAREC_BATCH__LOOKBACK_DAYS": "12"},
    )
    assert human.exit_code == 0 and "warning: " in human.stderr and "batch.lookback_days" in human.stderr


def test_without_as_of_a_historical_log_trains_up_to_its_newest_event(tmp_path: Path) -> None:
    """A newcomer's first run on an old log (MovieLens-like, 1998) with no --as-of publishes a snapshot."""
    from datetime import UTC, datetime

    path = tmp_path / "old.parquet"
    spec = SynthSpec(users=1500, items=600, events=60_000, seed=3, days=200, start=datetime(1997, 9, 20, tzinfo=UTC))
    events = synthesize(spec).events
    events.write_parquet(path)
    url = f"sqlite:///{tmp_path}/store"
    result = runner.invoke(app, ["batch", "run", "--store", url, "-i", str(path), "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout[result.stdout.index("{") :])
    assert m["published"] is True and m["counts"]["interactions"] == events.height
    assert m["window"]["end_ms"] == m["window"]["last_event_ms"]  # the cut-off is the newest event
    assert m["as_of"].startswith("1998-")
    assert m["warnings"] == []


def test_second_job_on_the_same_store_exits_4(tmp_path: Path, log_file: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.try_lock("batch-job", "someone-else", 60)
        result = runner.invoke(app, ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF])
        assert result.exit_code == 4
        assert "another batch job" in result.output
        store.unlock("batch-job", "someone-else")


def test_bad_input_exits_2_naming_the_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    missing = runner.invoke(app, ["batch", "run", "--store", url, "-i", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    csv = tmp_path / "log.csv"
    csv.write_text("user_id,item_id,timestamp\nu1,i1,1700000000\nu2,,1700000001\n")
    os.environ["LAMBDAREC_BATCH__ON_BAD_ROWS"] = "fail"
    try:
        bad = runner.invoke(app, ["batch", "run", "--store", url, "-i", str(csv), "--as-of", "2023-11-15"])
    finally:
        del os.environ["LAMBDAREC_BATCH__ON_BAD_ROWS"]
    assert bad.exit_code == 2
    assert "row 2" in bad.output and "item_id" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["load", "gate", "fit", "popularity", "batch.writing"])
def test_sigkill_at_any_stage_keeps_the_previous_snapshot(tmp_path: Path, log_file: Path, stage: str) -> None:
    url = f"sqlite:///{tmp_path}/store"
    code, first = batch(url, "-i", str(log_file))
    assert code == 0
    env = {**os.environ, "LAMBDAREC_LOG_FORMAT": "json", "LAMBDAREC_BATCH__LOCK_TTL_S": "2"}
    cmd = [
        sys.executable,
        "-m",
        "lambdarec",
        "batch",
        "run",
        "--store",
        url,
        "-i",
        str(log_file),
        "--as-of",
        AS_OF,
        "--no-progress",
        "--force",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f'"stage": "{stage}"' in line or f'"event": "{stage}"' in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-5:])
    with open_store(Settings.load(overrides={"store": {"url": url}})) as store:
        assert store.current_version(max_age_s=0) == first["version"]
        states = {s.version: s.state for s in store.list_snapshots()}
        assert [v for v, s in states.items() if s == "published"] == [first["version"]]
    time.sleep(2.5)  # the killed job's lock lapses
    code, rerun = batch(url, "-i", str(log_file), "--force")
    assert code == 0 and rerun["published"] is True
    assert rerun["version"] != first["version"]


def test_a_job_that_loses_its_lock_stops_before_publishing_with_exit_4(tmp_path: Path, log_file: Path) -> None:
    """Another holder takes the lock while the job runs (as after a pause longer than the TTL): the renewal is
    refused, so the job must not publish beside the new holder."""
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path}/store"
    stolen = threading.Event()

    def steal() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stolen.is_set():
            try:
                with sqlite3.connect(tmp_path / "store" / "snapshots.sqlite", timeout=10) as conn:
                    updated = conn.execute(
                        "UPDATE locks SET owner = 'thief', expires_at = ? WHERE name = 'batch-job'",
                        (time.time() + 600,),
                    ).rowcount
                if updated:
                    stolen.set()
            except sqlite3.Error:
                pass  # the store is not created yet
            time.sleep(0.05)

    thief = threading.Thread(target=steal, daemon=True)
    thief.start()
    settings = Settings.load(overrides={"store": {"url": url}, "batch": {"lock_ttl_s": 3}})
    from batch_layer.job import run_batch
    from lambdarec.store.lock import LockLostError

    with pytest.raises(LockLostError, match="lost the job lock") as err:
        run_batch(settings, interactions=str(log_file), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False)
    thief.join(timeout=5)
    assert stolen.is_set() and err.value.exit_code == 4
    with open_store(settings) as store:
        assert store.current_version(max_age_s=0) is None, "nothing may be published without the lock"
        assert not store.try_lock("batch-job", "someone-else", 60), "the new holder's lock stays"
