"""The archiver waits out a log or lake that stops answering, and resumes by itself with each record once.

Before: the first ``EventLogError`` (a broker that did not answer a poll or a group commit) or the first failing
lake commit (an ``OSError`` from the filesystem or the object store) ended ``archive run``. Here the real SQLite
log and the real Delta lake are wrapped so that their calls fail for a while; after recovery the lake must hold
every log record exactly once (by position and by event id), and ``health`` must have said what it waited for.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from batch_layer.archive import Archiver
from lambdarec.eventlog.base import EventLogUnavailableError
from lambdarec.lake import open_lake
from lambdarec.settings import Settings
from tests.integration.lake.test_archiver import archive_cli, assert_exactly_once, config_file, make_lines
from tests.integration.outage import Fault, methods_id, run_through_outage
from tests.integration.raw_log import append_raw
from tests.integration.serve_process import free_port


@pytest.fixture(params=["sqlite", "kafka"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s: dict = {
        "lake": {"url": str(tmp_path / "lake")},
        "log": {"url": f"sqlite:///{tmp_path}/events", "session_timeout_ms": 1000},
        "archive": {
            "max_batch_events": 100,
            "max_batch_s": 0.3,
            "poll_max_records": 50,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.3,
        },
    }
    if request.param == "kafka":
        host, port = request.getfixturevalue("kafka_endpoint")
        topic = f"archive-retry-{secrets.token_hex(4)}"
        s["log"] = {"url": f"kafka://{host}:{port}/{topic}", "dead_letter": f"{topic}-dlq"}
        s["archive"]["consumer_group"] = topic
    return Settings.load(overrides=s)


sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@pytest.mark.parametrize("methods", [{"poll"}, {"commit"}, {"poll", "commit"}], ids=methods_id)
def test_a_log_outage_is_waited_out_and_each_record_is_archived_once(settings: Settings, methods: set[str]) -> None:
    append_raw(settings, make_lines(random.Random(1), 3_000))
    with Archiver(settings) as archiver:
        archiver.consumer = fault = Fault(archiver.consumer, methods, EventLogUnavailableError)  # type: ignore[assignment]
        seen = run_through_outage(archiver, fault, lambda: archiver.stats.commits >= 3, 1.2)
        assert fault.failures >= 2, "the outage was retried"
        assert any(h["waiting_for"] == "log" and not h["ready"] and "test outage" in h["error"] for h in seen), seen
        assert archiver.health.to_json() == {"ready": True, "waiting_for": None}
    assert_exactly_once(settings)


@sqlite_only
def test_a_lake_outage_is_waited_out_and_each_record_is_archived_once(settings: Settings) -> None:
    append_raw(settings, make_lines(random.Random(2), 3_000))
    lake = Fault(open_lake(settings), {"append_log", "dead_letter", "positions", "erasures"}, OSError)
    with Archiver(settings, lake=lake) as archiver:  # type: ignore[arg-type]
        seen = run_through_outage(archiver, lake, lambda: archiver.stats.commits >= 3, 1.2)
        assert lake.failures >= 2
        assert any(h["waiting_for"] == "lake" and not h["ready"] and "OSError" in h["error"] for h in seen), seen
        assert archiver.health.to_json() == {"ready": True, "waiting_for": None}
    assert_exactly_once(settings)


def test_a_lake_commit_failing_n_times_loses_and_doubles_nothing(settings: Settings) -> None:
    """The events commit fails after the dead-letter commit of the same batch went through: the retry must
    neither lose the polled records nor write the dead letters twice."""
    append_raw(settings, make_lines(random.Random(3), 2_000, bad_share=0.1))
    lake = Fault(open_lake(settings), {"append_log"}, OSError, times=4)
    with Archiver(settings, lake=lake) as archiver:  # type: ignore[arg-type]
        stats = archiver.run(until_idle_s=1.0)
    assert lake.failures == 4
    assert stats.archived + stats.dead_lettered == 2_000
    assert_exactly_once(settings)


@sqlite_only
def test_give_up_after_s_bounds_the_wait(settings: Settings) -> None:
    settings = settings.model_copy(deep=True)
    settings.archive.give_up_after_s = 0.5
    append_raw(settings, make_lines(random.Random(4), 200))
    lake = Fault(open_lake(settings), {"append_log"}, OSError)
    lake.down.set()
    with Archiver(settings, lake=lake) as archiver:  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(OSError, match="test outage"):
            archiver.run(until_idle_s=1.0)
        assert 0.5 <= time.monotonic() - started < 10
    assert open_lake(settings).positions() == {}, "nothing was committed"


def _readyz(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


@sqlite_only
def test_archive_run_waits_for_a_lake_it_cannot_write_and_says_so(settings: Settings, tmp_path: Path) -> None:
    """``archive run`` used to exit 1 on the first failing lake write; now it waits, /readyz says why, and it
    archives everything once the lake can be written again, without a restart."""
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the lake's directory should be")
    settings = settings.model_copy(deep=True)
    settings.lake.url = str(blocker / "lake")
    append_raw(settings, make_lines(random.Random(5), 500))
    cfg = config_file(settings, tmp_path / "archive.toml")
    with cfg.open("a") as f:
        f.write("retry_initial_s = 0.05\nretry_max_s = 0.3\n")
    port = free_port()
    proc = archive_cli(cfg, "--metrics-port", str(port), "--json")
    try:
        got, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            got = _readyz(port)
            if got and got[1].get("waiting_for") == "lake" and got[1].get("retries", 0) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "archive run must keep waiting, not exit"
        assert got is not None and got[0] == 503 and got[1]["waiting_for"] == "lake", got
        assert "blocked" in got[1]["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as resp:
            assert resp.status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert 'lambdarec_archive_waiting{dependency="lake"} 1.0' in metrics
        assert 'lambdarec_archive_retries_total{dependency="lake"}' in metrics

        blocker.unlink()  # the fault clears
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = _readyz(port)
            if got and got[0] == 200:
                break
            time.sleep(0.1)
        assert got is not None and got[0] == 200 and got[1] == {"ready": True, "waiting_for": None}, got
        while time.monotonic() < deadline and sum(open_lake(settings).positions().values()) < 500:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert sum(json.loads(out)["positions"].values()) == 500
    assert_exactly_once(settings)


@sqlite_only
def test_archive_run_gives_up_after_give_up_after_s_with_exit_1(settings: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    blocker = tmp_path / "blocked"
    blocker.write_text("not a directory")
    settings = settings.model_copy(deep=True)
    settings.lake.url = str(blocker / "lake")
    append_raw(settings, make_lines(random.Random(6), 50))
    cfg = config_file(settings, tmp_path / "archive.toml")
    with cfg.open("a") as f:
        f.write("retry_initial_s = 0.05\nretry_max_s = 0.2\ngive_up_after_s = 1.0\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "lambdarec", "archive", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert time.monotonic() - started >= 1.0
    assert "gave up after archive.give_up_after_s (1 s)" in done.stderr
    assert "cannot create the lake table" in done.stderr
