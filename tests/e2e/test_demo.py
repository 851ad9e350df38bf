"""``lambdarec demo`` end to end, as a newcomer runs it: every layer on embedded defaults, nothing left running.

Each test runs the demo as a child process on a small synthetic log and checks what a user would notice: the
exit code, the report, a list that changed through the speed layer, and no server or consumer left behind,
also when the run is interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = ("--users", "1500", "--items", "600", "--events", "60000")
RUN_TIMEOUT_S = 120
STEPS = [f"[{n}/8]" for n in range(1, 9)]


def demo(*args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``python -m lambdarec demo ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "lambdarec", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:  # it exited between the two looks
        return False


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (the demo's folder is in every child's arguments)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_running(int(entry.name)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(doc: dict, folder: Path, *, reaped: bool = True) -> None:
    """No child process of the demo runs any more, and its port accepts no connection. ``reaped``: the demo
    itself stopped them and saw them exit (rather than leaving them to the kernel's parent-death signal)."""
    pids = {name: p["pid"] for name, p in doc.get("processes", {}).items()}
    if reaped:
        assert all(p["exit"] is not None for p in doc["processes"].values()), doc["processes"]
    deadline = time.monotonic() + 5  # a process the demo reaped may take a moment to leave /proc
    while time.monotonic() < deadline and any(pid_running(pid) for pid in pids.values()):
        time.sleep(0.1)
    assert not {n: p for n, p in pids.items() if pid_running(p)}, f"left running: {pids}"
    assert not processes_naming(str(folder.resolve()))
    if "serving" in doc:
        assert not port_open(doc["serving"]["port"])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    folder = tmp_path_factory.mktemp("demo") / "var"
    return demo("--dir", str(folder), *SMALL, "--json"), folder


def test_demo_runs_every_layer_and_leaves_nothing_running(first_run) -> None:
    proc, folder = first_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok"
    for step in STEPS:  # numbered progress on stderr, stdout is only the JSON
        assert step in proc.stderr
    assert doc["log"]["events"] == 60_000 and doc["batch"]["counts"]["users"] == 1500
    report = Path(doc["replay"]["html"])
    assert report.is_file() and report.parent == (folder / "report").resolve()
    assert set(doc["replay"]["variants"]) == {"popular", "batch", "batch+speed", "lambda"}

    before = [i["item_id"] for i in doc["before"]["items"]]
    after = [i["item_id"] for i in doc["after"]["items"]]
    assert before != after and doc["applied"]["seen"]
    assert doc["before"]["fresh_state_age_s"] is None and doc["after"]["fresh_state_age_s"] is not None
    assert {i["source"] for i in doc["after"]["items"]} & {"speed", "session"}
    assert set(doc["processes"]) == {"speed", "serve"}
    assert_nothing_left(doc, folder)
    # the loop: posted events archived, the second nightly read the lake, counted each exactly once, flipped
    loop, posted = doc["loop"], doc["burst"]["post"]["accepted"]
    assert loop["ok"] and loop["archived"]["archived"] == posted
    assert loop["grew_by"] == loop["log_events_in_lake"] == posted
    assert loop["flipped"] and loop["burst_in_history"]
    assert doc["lake_import"]["appended"] == 60_000

    config = (folder / "lambdarec.toml").read_text()
    assert "ingest_key_hashes" in config
    key = re.search(r"ingest key \(shown once.*\): (\S+)", proc.stderr)
    assert key is not None and key.group(1) not in config  # only the digest is stored


def test_a_rerun_reuses_the_folder(first_run) -> None:
    proc, folder = first_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    first = json.loads(proc.stdout)
    again = demo("--dir", str(folder), *SMALL, "--json")
    assert again.returncode == 0, again.stderr[-4000:]
    doc = json.loads(again.stdout)
    assert doc["log"]["reused"] and doc["lake_import"]["already_imported"]  # the same file enters the lake once
    # every event posted by both runs is in the lake exactly once, and the rerun's second nightly counts them
    assert doc["loop"]["log_events_in_lake"] == first["burst"]["post"]["accepted"] + doc["burst"]["post"]["accepted"]
    assert doc["loop"]["grew_by"] == doc["loop"]["log_events_in_lake"]
    # The first run's user has fresh state now; the rerun shows the change on someone new.
    assert doc["user"] != first["user"] and doc["applied"]["seen"]
    assert_nothing_left(doc, folder)


def test_sigint_after_serving_is_up_stops_everything(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambdarec", "demo", "--dir", str(folder), *SMALL, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.strip().startswith("serving on http://"):
                break
        else:
            pytest.fail("the demo ended before serving:\n" + "".join(seen[-40:]))
        port = int(re.search(r":(\d+) \(pid", seen[-1]).group(1))  # type: ignore[union-attr]
        assert port_open(port)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    doc = json.loads(out)
    assert doc["status"] == "interrupted" and doc["signal"] == "SIGINT"
    assert set(doc["processes"]) == {"speed", "serve"}
    assert_nothing_left(doc, folder)
    assert not port_open(port)


def test_keep_serving_leaves_servers_that_stop_on_request(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    try:
        proc = demo("--dir", str(folder), *SMALL, "--sample", "200", "--keep-serving", "--json")
        assert proc.returncode == 0, proc.stderr[-4000:]
        doc = json.loads(proc.stdout)
        pids = [p["pid"] for p in doc["processes"].values()]
        assert all(pid_running(pid) for pid in pids) and port_open(doc["serving"]["port"])
        assert json.loads((folder / "servers.json").read_text())["url"] == doc["serving"]["url"]
    finally:
        stopped = demo("--dir", str(folder), "--stop", "--json", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(json.loads(stopped.stdout)["stopped"]) == sorted(pids)
    assert_nothing_left(doc, folder, reaped=False)  # a later `demo --stop` stopped them
    assert not (folder / "servers.json").exists()


def test_bad_input_exits_2_and_touches_nothing(tmp_path: Path) -> None:
    precious = tmp_path / "mine" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me")
    wipe = demo("--dir", str(precious.parent), "--fresh", timeout=60)
    assert wipe.returncode == 2 and "--fresh would delete" in wipe.stdout
    assert precious.read_text() == "keep me"

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = demo("--dir", str(tmp_path / "var"), "--port", str(port), "--json", timeout=60)
    assert taken.returncode == 2 and f"--port {port} is in use" in taken.stderr
    assert json.loads(taken.stdout)["status"] == "failed"

    missing = demo("--dir", str(tmp_path / "var"), "--interactions", str(tmp_path / "nope.parquet"), timeout=60)
    assert missing.returncode == 2 and "nope.parquet" in missing.stdout
