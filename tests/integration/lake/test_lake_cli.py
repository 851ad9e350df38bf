"""``lambdarec lake``, ``archive run`` and ``batch run`` on the lake, through the CLI as an operator types them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.eventlog import open_log
from lambdarec.settings import Settings

runner = CliRunner()
T0 = 1_764_400_000


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LAMBDAREC_LAKE__URL", str(tmp_path / "lake"))
    monkeypatch.setenv("LAMBDAREC_LOG__URL", f"sqlite:///{tmp_path}/events")
    monkeypatch.setenv("LAMBDAREC_STORE__URL", f"sqlite:///{tmp_path}/store")
    monkeypatch.setenv("LAMBDAREC_BATCH__LOOKBACK_DAYS", "100000")
    monkeypatch.setenv("LAMBDAREC_BATCH__TRAIN__ITERATIONS", "3")
    monkeypatch.setenv("LAMBDAREC_BATCH__TRAIN__FACTORS", "8")
    monkeypatch.setenv("LAMBDAREC_BATCH__TOP_K", "20")
    return Settings.load()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def history(tmp_path: Path, n: int = 600) -> Path:
    rows = [
        {"user_id": f"u{i % 30}", "item_id": f"i{(i * 7) % 25}", "timestamp": T0 + i, "event_type": "view"}
        for i in range(n)
    ]
    path = tmp_path / "history.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def post(settings: Settings, events: list[dict]) -> None:
    with open_log(settings) as log:
        log.ensure_topic()
        log.append([json.dumps(e).encode() for e in events], keys=[e.get("user_id") for e in events])


def test_import_show_and_the_same_file_twice(env: Settings, tmp_path: Path) -> None:
    path = history(tmp_path)
    code, out = invoke("lake", "import", str(path), "--json")
    assert code == 0 and json.loads(out)["files"][0]["appended"] == 600
    code, out = invoke("lake", "import", str(path), "--json")
    assert code == 0 and json.loads(out)["files"][0]["already_imported"] is True
    code, out = invoke("lake", "show", "--json")
    body = json.loads(out)
    assert code == 0 and (body["rows"], body["users"], body["items"]) == (600, 30, 25)
    assert set(body) == {"version", "rows", "users", "items", "min_ts", "max_ts", "positions"}
    code, _ = invoke("lake", "import", str(tmp_path / "missing.csv"))
    assert code == 2


def test_batch_pins_a_version_and_reproduces_it(env: Settings, tmp_path: Path) -> None:
    invoke("lake", "import", str(history(tmp_path)))
    dup = {"event_id": "dup", "user_id": "u1", "item_id": "i3", "event_type": "click", "timestamp": T0 + 10}
    post(env, [dup, dup, {**dup, "event_id": "other"}])  # a producer's retry: the same event_id twice
    code, out = invoke("archive", "run", "--until-idle", "0.5", "--json")
    body = json.loads(out)
    assert code == 0 and body["archived"] == 3 and sum(int(n) for n in body["positions"].values()) == 3
    code, out = invoke("batch", "run", "--json", "--no-progress")
    first = json.loads(out)
    assert code == 0, out
    assert first["counts"]["interactions"] == 602  # the duplicate event_id dropped at read
    assert first["input"]["read"]["duplicates_dropped"] == 1
    assert first["log_positions"] == body["positions"]
    post(env, [{**dup, "event_id": f"more-{i}", "timestamp": T0 + 20 + i} for i in range(5)])
    invoke("archive", "run", "--until-idle", "0.5")
    code, out = invoke("batch", "run", "--json", "--no-progress")
    assert json.loads(out)["counts"]["interactions"] == 607
    code, out = invoke(
        "batch", "run", "--json", "--no-progress", "--force", "--lake-version", str(first["lake_version"])
    )
    again = json.loads(out)
    assert code == 0 and again["lake_version"] == first["lake_version"]
    assert again["counts"] == first["counts"] and again["input_fingerprint"] == first["input_fingerprint"]
    code, _ = invoke("batch", "run", "--no-progress", "--lake-version", "999")
    assert code == 2
    # --interactions still reads files
    code, out = invoke(
        "batch", "run", "--json", "--no-progress", "--force", "--interactions", str(tmp_path / "history.parquet")
    )
    assert code == 0 and json.loads(out)["counts"]["interactions"] == 600 and "lake_version" not in json.loads(out)


def test_wait_exits_0_when_archived_and_75_on_timeout(env: Settings, tmp_path: Path) -> None:
    post(env, [{"event_id": "w1", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0}])
    now = str(time.time())
    code, out = invoke("lake", "wait", "--until", now, "--timeout", "0.5", "--json")
    assert code == 75 and json.loads(out)["reached"] is False
    invoke("archive", "run", "--until-idle", "0.3")
    code, out = invoke("lake", "wait", "--until", now, "--timeout", "5", "--json")
    assert code == 0 and json.loads(out)["reached"] is True
    code, _ = invoke("lake", "wait", "--until", "yesterday-ish", "--timeout", "1")
    assert code == 2


def test_compact_and_vacuum_floor(env: Settings, tmp_path: Path) -> None:
    for i in range(3):
        post(env, [{"event_id": f"c{i}", "user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": T0}])
        invoke("archive", "run", "--until-idle", "0.2")
    code, out = invoke("lake", "compact", "--json")
    assert code == 0 and json.loads(out)["files_removed"] >= 2
    code, _ = invoke("lake", "vacuum", "--retain-hours", "1")
    assert code == 2  # below the safety floor (lake.vacuum_min_retain_hours)
    code, out = invoke("lake", "vacuum", "--retain-hours", "168", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["dry_run"] is True


def test_forget_removes_the_user_from_the_lake_and_prints_vacuum_guidance(env: Settings, tmp_path: Path) -> None:
    invoke("lake", "import", str(history(tmp_path)))
    code, out = invoke("forget", "u1", "u2", "--json")
    body = json.loads(out)
    assert code == 0 and body["lake_rows_deleted"] == 40 and "vacuum" in body["vacuum"]
    code, out = invoke("lake", "show", "--json")
    assert json.loads(out)["users"] == 28


def test_forget_reapply_keeps_erased_events_out_of_fresh_state_rebuilt_from_the_log(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runbook's recomputation: fresh state cleared, `forget --reapply`, a new consumer group from the start of
    the log. The erased user's events from before the erasure stay out; theirs after it and others' are back."""
    from lambdarec.store import open_store
    from speed_layer.consumer import SpeedConsumer

    def event(user: str, item: str, n: int) -> dict:
        return {"event_id": f"{user}-{item}", "user_id": user, "item_id": item, "event_type": "click",
                "timestamp": T0 + n}  # fmt: skip

    post(env, [event("u1", "i1", 1), event("u1", "i2", 2), event("u2", "i1", 3)])
    with SpeedConsumer(env) as consumer:
        consumer.run(until_idle_s=1.0)
    assert invoke("forget", "u1", "--json")[0] == 0
    post(env, [event("u1", "i3", 4)])  # after the erasure: theirs again
    for name in ("fresh.sqlite", "fresh.sqlite-wal", "fresh.sqlite-shm"):  # the fresh state cleared
        (tmp_path / "store" / name).unlink(missing_ok=True)
    code, out = invoke("forget", "--reapply", "--json")
    assert (code, json.loads(out)) == (0, {"reapplied": 1})
    assert invoke("forget", "--reapply", "u2")[0] == 2
    monkeypatch.setenv("LAMBDAREC_LOG__CONSUMER_GROUP", "rebuild")
    with SpeedConsumer(Settings.load()) as consumer:
        consumer.run(until_idle_s=1.0)
    with open_store(env) as store:
        states = store.read_fresh_users(["u1", "u2"])
    assert [e[0] for e in states["u1"].events] == ["i3"] and states["u1"].erased_at is not None
    assert [e[0] for e in states["u2"].events] == ["i1"]


def test_replay_reads_the_lake(env: Settings, tmp_path: Path) -> None:
    from batch_layer.synth import SynthSpec, synthesize

    path = tmp_path / "synth.parquet"
    synthesize(SynthSpec(users=150, items=80, events=6000, seed=2)).events.write_parquet(path)
    invoke("lake", "import", str(path))
    code, out = invoke(
        "replay", "--interactions", "lake", "--split-at", "80%", "--sample", "200", "--no-progress", "--json"
    )
    assert code == 0, out
    body = json.loads(out)
    assert body["events_scored"] > 0
    code, _ = invoke("replay", "--interactions", "lake@99", "--split-at", "80%", "--no-progress")
    assert code == 2


def test_replay_exports_the_lake_when_an_erased_user_came_back(env: Settings, tmp_path: Path) -> None:
    from batch_layer.lake_source import export_lake
    from lambdarec.lake import Lake

    invoke("lake", "import", str(history(tmp_path)))
    assert invoke("forget", "u1", "--json")[0] == 0
    back = tmp_path / "back.parquet"  # the erased user returns: their new events are archived after the erasure
    pl.DataFrame([{"user_id": "u1", "item_id": "i3", "timestamp": T0 + 900, "event_type": "view"}]).write_parquet(back)
    invoke("lake", "import", str(back))
    out, _ = export_lake(Lake(env.lake), str(tmp_path / "export.parquet"))
    exported = pl.read_parquet(out)
    assert exported.filter(pl.col("user_id") == "u1")["item_id"].to_list() == ["i3"]  # only what came after
    assert exported.height == 600 - 20 + 1


def test_import_reads_the_public_dataset_formats(env: Settings, tmp_path: Path) -> None:
    path = tmp_path / "u.data"  # MovieLens-100K's layout: user, item, rating, epoch seconds, tab-separated
    path.write_text("1\t10\t5\t881250949\n2\t20\t3\t881250950\n")
    code, out = invoke("lake", "import", str(path), "--json")
    assert code == 0 and json.loads(out)["files"][0]["appended"] == 2
    code, out = invoke("lake", "show", "--json")
    assert json.loads(out)["min_ts"].startswith("1997-12-04T15:55:49")
