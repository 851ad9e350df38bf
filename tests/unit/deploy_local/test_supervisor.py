"""The supervisor behind ``deploy/local/services``: a server is launched detached into a session of its own, counted
as ours only while its command line carries the folder's marker, and stopped with everything it spawned.

Each test launches its own small Python process (a sleeper that starts a child) with its own marker and folder;
the shared Cassandra and Kafka are never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.deploy_local.conftest import SVCTOOL, free_port, svctool

# A stand-in server: starts a child in its session, says so on stdout (the log), and sleeps.
SLEEPER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print('started child', child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def wait_until(check, timeout_s: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s: {check}")


class Launched:
    """One sleeper launched through ``svctool.py launch``, with its folder, pid file, log and marker."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pidfile = str(folder / "sleeper.pid")
        self.log = folder / "stdout.log"
        self.marker = f"-Dlambdarec.service.home={folder}/sleeper"
        self.pid: int | None = None

    def launch(self, **run: object) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(SVCTOOL), "launch", self.pidfile, str(self.log), "--"]
        argv += [sys.executable, "-c", SLEEPER, self.marker]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, **run)  # type: ignore[call-overload]
        if proc.returncode == 0:
            self.pid = int(proc.stdout.strip())
        return proc

    def child_pid(self) -> int:
        line = wait_until(lambda: "started child" in self.log.read_text() and self.log.read_text())
        return int(line.split("started child", 1)[1].split()[0])


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Launched]:
    launched = Launched(tmp_path)
    yield launched
    if launched.pid is not None and svctool("alive", launched.pidfile, launched.marker).returncode == 0:
        os.killpg(launched.pid, signal.SIGKILL)  # only our own sleeper: the marker names this test's folder


def test_launch_detaches_the_command_into_a_session_of_its_own_and_records_its_pid(sleeper: Launched) -> None:
    proc = sleeper.launch()
    assert proc.returncode == 0, proc.stderr
    pid = sleeper.pid
    assert pid is not None and pid != os.getpid()
    assert Path(sleeper.pidfile).read_text().strip() == str(pid)
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid, "kill -- -PID must reach all it spawns"
    child = sleeper.child_pid()
    assert os.getsid(child) == pid
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{pid}/fd/1") == str(sleeper.log)
    # not left as a child of the caller's process tree (a test runner may itself be an orphan of init, so the
    # launched process's parent is compared with this process, not with this process's parent)
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1]) != os.getpid()


def test_the_launched_server_does_not_inherit_the_callers_descriptors(sleeper: Launched, tmp_path: Path) -> None:
    """The ``services`` lock is a descriptor of the calling shell: a server holding it would block every later
    ``services`` command until the server exits."""
    with open(tmp_path / ".lock", "w") as lock:
        proc = sleeper.launch(pass_fds=(lock.fileno(),))
        assert proc.returncode == 0, proc.stderr
        assert sleeper.pid is not None
        sleeper.child_pid()  # running its own code by now
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{sleeper.pid}/fd"))
        held = [os.readlink(f"/proc/{sleeper.pid}/fd/{fd}") for fd in fds]
    assert str(tmp_path / ".lock") not in held
    assert fds[:3] == [0, 1, 2]


def test_alive_and_session_pids_follow_the_process_until_its_group_is_stopped(sleeper: Launched) -> None:
    assert sleeper.launch().returncode == 0
    pid = sleeper.pid
    assert pid is not None
    child = sleeper.child_pid()

    alive = svctool("alive", sleeper.pidfile, sleeper.marker)
    assert (alive.returncode, alive.stdout.strip()) == (0, str(pid))
    other = svctool("alive", sleeper.pidfile, "-Dlambdarec.service.home=/another/folder/sleeper")
    assert (other.returncode, other.stdout) == (1, ""), "a process without our marker is not ours"
    listed = [int(p) for p in svctool("session-pids", str(pid)).stdout.split()]
    assert listed[0] == pid and child in listed

    os.killpg(pid, signal.SIGTERM)
    wait_until(lambda: svctool("alive", sleeper.pidfile, sleeper.marker).returncode == 1)
    wait_until(lambda: svctool("session-pids", str(pid)).stdout.strip() == "")


def test_a_stale_or_broken_pid_file_is_not_a_running_service(tmp_path: Path) -> None:
    marker = f"-Dlambdarec.service.home={tmp_path}/cassandra"
    pidfile = tmp_path / "cassandra.pid"
    assert svctool("alive", str(pidfile), marker).returncode == 1, "no pid file"
    pidfile.write_text(f"{os.getpid()}\n")  # a live pid, reused by a process that is not the service
    assert svctool("alive", str(pidfile), marker).returncode == 1
    pidfile.write_text("not a pid\n")
    assert svctool("alive", str(pidfile), marker).returncode == 1


def test_a_command_that_cannot_start_leaves_its_reason_in_the_log(tmp_path: Path) -> None:
    """``launch`` returns once the server's session exists; an exec that fails then says why in the server's log,
    which ``services up`` shows when the service exits during startup."""
    pidfile, log = tmp_path / "missing.pid", tmp_path / "stdout.log"
    proc = svctool("launch", str(pidfile), str(log), "--", str(tmp_path / "no-such-server"))
    assert proc.returncode == 0
    wait_until(lambda: "launch failed" in log.read_text())
    assert "no-such-server" in log.read_text() or "No such file" in log.read_text()
    assert svctool("alive", str(pidfile), str(tmp_path)).returncode == 1


def test_launch_without_a_command_is_a_usage_error(tmp_path: Path) -> None:
    for args in (["launch", str(tmp_path / "p"), str(tmp_path / "l"), "sleep"], ["launch", "p", "l", "--"]):
        proc = svctool(*args)
        assert proc.returncode == 1
        assert "usage: launch PIDFILE LOGFILE -- CMD" in proc.stderr
    assert not (tmp_path / "p").exists()


def test_port_free_names_the_first_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free = free_port()
        taken = svctool("port-free", "127.0.0.1", str(free), str(port))
        assert taken.returncode == 1
        assert taken.stdout.strip() == str(port)
        assert f"port 127.0.0.1:{port} is not available" in taken.stderr
    assert svctool("port-free", "127.0.0.1", str(free)).returncode == 0


def test_render_fills_every_placeholder_or_writes_nothing(tmp_path: Path) -> None:
    template = tmp_path / "server.properties.in"
    template.write_text("listeners=PLAINTEXT://@HOST@:@BROKER_PORT@\nlog.dirs=@DATA_DIR@/data\n")
    out = tmp_path / "server.properties"
    ok = svctool("render", str(template), str(out), "HOST=127.0.0.1", "BROKER_PORT=29092", "DATA_DIR=/d=x")
    assert ok.returncode == 0, ok.stderr
    assert out.read_text() == "listeners=PLAINTEXT://127.0.0.1:29092\nlog.dirs=/d=x/data\n"

    out.unlink()
    missing = svctool("render", str(template), str(out), "HOST=127.0.0.1")
    assert missing.returncode == 1
    assert "no value for BROKER_PORT, DATA_DIR" in missing.stderr
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    bad = svctool("render", str(template), str(out), "HOST")
    assert (bad.returncode, "expected KEY=VALUE, got 'HOST'" in bad.stderr) == (1, True)


def test_cluster_ids_are_fresh_base64url_uuids() -> None:
    import base64
    import uuid

    ids = {svctool("cluster-id").stdout.strip() for _ in range(2)}
    assert len(ids) == 2
    for cid in ids:
        assert len(cid) == 22 and "=" not in cid
        assert uuid.UUID(bytes=base64.urlsafe_b64decode(cid + "=="))


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kafka-storage format -t -l_Zw...`` reads the id as an option and fails; one uuid in 64 encodes that way."""
    import uuid

    from svc import templates

    dash_first = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))  # base64url of 0xF8 starts with "-"
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(templates.uuid, "uuid4", lambda: next(draws))
    cid = templates.cluster_id()
    assert cid == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_the_kafka_format_passes_the_cluster_id_as_one_argument() -> None:
    """An id read back from ``cluster.id`` (an older one may start with ``-``) is given as ``--cluster-id=ID``."""
    script = (SVCTOOL.parent / "services").read_text(encoding="utf-8")
    fmt = script[script.index("kafka.tools.StorageTool format") :].split("\n", 2)[:2]
    assert '"--cluster-id=$(cat "$base/cluster.id")"' in "\n".join(fmt)


def test_an_unknown_command_or_wrong_arguments_exit_2_with_the_usage() -> None:
    unknown = svctool("restart")
    assert unknown.returncode == 2 and "Subcommands" in unknown.stderr
    wrong = svctool("alive", "only-one-argument")
    assert wrong.returncode == 2 and "alive: bad arguments" in wrong.stderr
