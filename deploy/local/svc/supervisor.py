"""A small process supervisor for the servers: detached launch, is-it-ours checks, the session's pids, free ports.

A server is launched into a session of its own (pid == process group == session id), so ``kill -- -PID`` reaches
everything it spawns, and recorded in a pid file. A pid file alone can go stale and its pid be reused, so a
process counts as ours only while its command line carries a marker unique to the services folder.
"""

from __future__ import annotations

import os
import socket


class LaunchError(RuntimeError):
    """The command could not be started."""


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, or None when it is free."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Java and Netty servers set SO_REUSEADDR, so TIME_WAIT leftovers from a
    # previous run are no obstacle; test the same way.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, int(port)))
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()
    return None


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pid_state(pid: int) -> str | None:
    """Process state letter from /proc (R, S, Z, ...), or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def pid_matches(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs (not a zombie) and its command line contains ``marker``."""
    state = pid_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return marker in cmdline


def alive(pidfile: str, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process runs and carries ``marker``, else None."""
    pid = read_pid(pidfile)
    if pid is not None and pid_matches(pid, marker):
        return pid
    return None


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid``: ``sid`` itself first (if alive), then the others."""
    found = [sid] if pid_state(sid) not in (None, "Z", "X") else []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is state, [1] ppid, [2] pgrp, [3] session
        if int(fields[3]) == sid and int(name) != sid and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def launch(pidfile: str, logfile: str, cmd: list[str]) -> int | None:
    """Double-fork ``cmd`` into a new session (so `kill -- -PID` reaches the whole
    group), detached from our stdio (output appended to ``logfile``), reparented to init; write its pid to
    ``pidfile`` and return it."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild:
                os._exit(0)
            # The grandchild is not a group leader, so setsid() succeeds and
            # makes it leader of a new session and process group: pid == pgid
            # == sid, hence `kill -- -PID` reaches everything it spawns.
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            with open(pidfile + ".tmp", "w") as f:
                f.write("%d\n" % os.getpid())
            os.replace(pidfile + ".tmp", pidfile)
            os.write(w, b"ok")
            os.close(w)
            # Do not leak the caller's descriptors (notably the `services` lock
            # file) into the long-running server.
            os.closerange(3, 65536)
            os.execvp(cmd[0], list(cmd))
        except BaseException as e:
            try:
                os.write(2, (f"launch failed: {e}\n").encode())
            finally:
                os._exit(127)
    os.close(w)
    os.waitpid(child, 0)
    ok = os.read(r, 2)
    os.close(r)
    if ok != b"ok":
        raise LaunchError(f"launch: could not start {cmd[0]}")
    return read_pid(pidfile)
