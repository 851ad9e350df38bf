"""``services up seaweedfs`` watches the server it starts through its process, not through /proc/PID/cmdline.

Right after the fork the child's command line can still be the launcher's own (on a busy machine the child has not
exec'd ``weed`` yet); the launcher took that for a dead server, gave up at once with "did not answer within 180s",
and lost track of the server it had started. A stand-in process plays the server here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import seaweedfs  # deploy/local, on sys.path by this folder's conftest


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Patch the launcher: ``start`` runs ``code`` as the server; ``pid`` never recognises it (the race);
    ``answering`` says yes after ``ready_after`` polls (None: never)."""
    started: list[subprocess.Popen[bytes]] = []

    def use(code: str, ready_after: int | None) -> None:
        polls = [0]

        def start(_dir: Path) -> subprocess.Popen[bytes]:
            started.append(subprocess.Popen([sys.executable, "-c", code]))
            return started[-1]

        def answering(_port: int) -> bool:
            polls[0] += 1
            return ready_after is not None and polls[0] > ready_after

        monkeypatch.setattr(seaweedfs, "start", start)
        monkeypatch.setattr(seaweedfs, "pid", lambda _dir: None)
        monkeypatch.setattr(seaweedfs, "answering", answering)
        monkeypatch.setattr(seaweedfs, "ports", lambda _dir: {"s3": 18333})
        monkeypatch.setattr(seaweedfs, "stop", lambda _dir: None)
        monkeypatch.setattr(seaweedfs, "base", lambda _dir: tmp_path)
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "weed.log").write_text("weed: last words\n")

    yield use
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_server_whose_command_line_is_not_yet_its_own_is_waited_for(stand_in, tmp_path: Path, capsys) -> None:
    stand_in("import time; time.sleep(30)", ready_after=3)
    assert seaweedfs.cmd_up(tmp_path) == 0
    assert "export LAMBDAREC_TEST_S3=127.0.0.1:18333" in capsys.readouterr().out


def test_a_server_that_exits_is_reported_with_its_exit_code_and_log(stand_in, tmp_path: Path, capsys) -> None:
    stand_in("raise SystemExit(3)", ready_after=None)
    with pytest.raises(SystemExit):
        seaweedfs.cmd_up(tmp_path)
    err = capsys.readouterr().err
    assert "exited (3) before starting" in err and "weed: last words" in err
