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


def test_quality_gate_refuses_a_worse_model_with_exit_3(tmp_path: Path, log_file: Path) -> None:
    url = f"sqlite:///{tmp_path}/store"
    assert batch(url, "-i", str(log_file))[0] == 0
    # A much weaker model (2 factors, 1 iteration) must be refused against the good one.
    env = {
        "LAMBDAREC_BATCH__FACTORS": "2",
        "LAMBDAREC_BATCH__ITERATIONS": "1",
        "LAMBDAREC_BATCH__MAX_REGRESSION": "0.05",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = runner.invoke(
            app, ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF, "--no-progress"]
        )
        assert result.exit_code == 3, result.output
        assert "quality gate" in result.output and "popularity baseline" in result.output
        forced = runner.invoke(
            app, ["batch", "run", "--store", url, "-i", str(log_file), "--as-of", AS_OF, "--no-progress", "--force"]
        )
        assert forced.exit_code == 0, forced.output
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    from batch_layer.job import LockLostError, run_batch

    with pytest.raises(LockLostError, match="lost the job lock") as err:
        run_batch(settings, interactions=str(log_file), as_of=datetime(2024, 2, 1, tzinfo=UTC), progress=False)
    thief.join(timeout=5)
    assert stolen.is_set() and err.value.exit_code == 4
    with open_store(settings) as store:
        assert store.current_version(max_age_s=0) is None, "nothing may be published without the lock"
        assert not store.try_lock("batch-job", "someone-else", 60), "the new holder's lock stays"
