"""The demo's child processes: the speed layer and the HTTP server, each started as a user would start it.

Each runs ``python -m lambdarec ...`` in a process group of its own, its output in ``DIR/logs/NAME.log``.
Stopping sends SIGTERM to the group (both commands finish what they hold and exit), then SIGKILL after a grace
period. On Linux a child also gets SIGTERM when the demo dies without cleaning up (even by SIGKILL), unless it
is meant to outlive the demo (``--keep-serving``); then its pid is recorded in ``DIR/servers.json`` so that
``lambdarec demo --stop`` (or the next run) stops it.

Example
-------
>>> speed = start_service("speed", ["speed", "run", "--config", "var/demo/lambdarec.toml"], ws)  # doctest: +SKIP
>>> stop_services([speed])                                                                       # doctest: +SKIP
{'speed': 0}
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demo.workspace import Workspace

STOP_GRACE_S = 12.0  # uvicorn's own graceful shutdown is given 10 s
_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A child process failed to start or to become ready; the message ends with the tail of its log."""


@dataclass
class Service:
    """A running child process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    signalled: bool = False  # SIGTERM sent once: a second one could land inside the child's own stop handler

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines of the process's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_service(name: str, args: list[str], ws: Workspace, *, outlive: bool = False) -> Service:
    """Start ``python -m lambdarec ARGS`` in its own process group, output appended to ``DIR/logs/NAME.log``."""
    log_path = ws.logs / f"{name}.log"
    env = {**os.environ, "LAMBDAREC_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambdarec", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the demo only; the demo stops the children
            preexec_fn=None if outlive else _die_with_parent(),  # noqa: PLW1509 (a pre-resolved libc call only)
        )
    return Service(name, proc, log_path)


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a pre-exec hook asking the kernel to SIGTERM the child when the demo dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # Resolved here, in the parent: between fork and exec the child only makes the one call.
    return lambda: prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def stop_services(services: list[Service], grace_s: float = STOP_GRACE_S) -> dict[str, int | None]:
    """SIGTERM every service's process group, SIGKILL what is left after ``grace_s``; their exit codes."""
    for s in services:
        if not s.signalled:
            s.signalled = True
            _signal_group(s.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    codes: dict[str, int | None] = {}
    for s in services:
        try:
            codes[s.name] = s.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _signal_group(s.pid, signal.SIGKILL)
            codes[s.name] = s.proc.wait(timeout=5)
        _signal_group(s.pid, signal.SIGKILL)  # anything the child itself started and left in its group
    return codes


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str) -> int:
    """A TCP port nobody listens on at ``host`` now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_ready(url: str, service: Service, timeout_s: float) -> float:
    """Poll ``url`` (``/readyz``) until it answers 200; the seconds it took.

    Raises
    ------
    ServiceError
        The process exited, or ``url`` did not answer 200 within ``timeout_s``.
    """
    t0 = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - t0 < timeout_s:
        if not service.alive():
            raise ServiceError(f"{service.name} exited with code {service.proc.returncode}:\n{service.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (a URL the demo built)
                if resp.status == 200:
                    return time.monotonic() - t0
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServiceError(f"{service.name} not ready at {url} after {timeout_s:.0f} s ({last}):\n{service.tail()}")


def record_servers(ws: Workspace, services: list[Service], url: str) -> None:
    """Note the servers left running by ``--keep-serving`` in ``DIR/servers.json``."""
    body = {"url": url, "pids": {s.name: s.pid for s in services}, "started": time.time()}
    ws.servers.write_text(json.dumps(body, indent=2) + "\n")


def stop_recorded(ws: Workspace) -> list[int]:
    """Stop the servers an earlier ``--keep-serving`` run left (those still running ``lambdarec``); their pids."""
    if not ws.servers.is_file():
        return []
    try:
        pids = [int(p) for p in json.loads(ws.servers.read_text()).get("pids", {}).values()]
    except (ValueError, AttributeError):
        pids = []
    stopped = [pid for pid in pids if _is_ours(pid)]
    for pid in stopped:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(_is_ours(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in stopped:
        if _is_ours(pid):
            _signal_group(pid, signal.SIGKILL)
    ws.servers.unlink(missing_ok=True)
    return stopped


def _is_ours(pid: int) -> bool:
    """Whether ``pid`` runs and leads its group running ``lambdarec`` (a recycled pid is left alone)."""
    try:
        if os.getpgid(pid) != pid:
            return False
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc to ask: a group leader with the recorded pid is taken to be ours
    try:
        running = (proc / "stat").read_text().rsplit(") ", 1)[-1][:1] != "Z"
        return running and b"lambdarec" in (proc / "cmdline").read_bytes()
    except OSError:  # it exited between the two looks
        return False
