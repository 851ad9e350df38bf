"""Wait until several services answer their probe; name those that exited or did not answer in time, with the
last lines of their logs. Progress and diagnostics go to stderr."""

from __future__ import annotations

import os
import sys
import time

from .cql import probe_cql
from .kafka import probe_kafka
from .supervisor import pid_matches, read_pid
from .wire import ProbeError


def err(msg):
    print(msg, file=sys.stderr, flush=True)


PROBES = {"cql": probe_cql, "kafka": probe_kafka}


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    return lines[-n:]


def print_logs(name, logs):
    for path in logs:
        lines = tail(path)
        if not lines:
            continue
        err("---- %s: last %d lines of %s ----" % (name, len(lines), path))
        for line in lines:
            err("  " + line)
    err("---- end of {} logs (all logs: {}) ----".format(name, os.path.dirname(logs[0]) if logs else "?"))


def wait_for(timeout, specs):
    """Wait up to ``timeout`` seconds until every SPEC answers its probe; the names of those that did not.

    A SPEC is name, kind (cql or kafka), host, port, pid file, marker, log files..., joined by \\x1f.
    """
    deadline = time.monotonic() + float(timeout)
    start = time.monotonic()
    pending = {}
    for spec in specs:
        name, kind, host, port, pidfile, marker, *logs = spec.split("\x1f")
        pending[name] = (kind, host, port, pidfile, marker, logs)
    last_error = {}
    failed = []
    while pending:
        for name in list(pending):
            kind, host, port, pidfile, marker, logs = pending[name]
            pid = read_pid(pidfile)
            if pid is None or not pid_matches(pid, marker):
                err(f"services: ERROR: {name} exited during startup (pid {pid}).")
                print_logs(name, logs)
                failed.append(name)
                del pending[name]
                continue
            try:
                info = PROBES[kind](host, port)
            except (OSError, ProbeError) as e:
                last_error[name] = str(e)
                continue
            err(f"services: {name} is up on {host}:{port} after {time.monotonic() - start:.0f}s ({info})")
            del pending[name]
        if not pending:
            break
        if time.monotonic() >= deadline:
            for name, (_kind, host, port, _pidfile, _marker, logs) in pending.items():
                err(
                    "services: ERROR: {} did not answer on {}:{} within {}s (last error: {}).".format(
                        name, host, port, timeout, last_error.get(name, "none")
                    )
                )
                err("services:        raise LAMBDAREC_SERVICES_TIMEOUT if this machine is just slow.")
                print_logs(name, logs)
                failed.append(name)
            break
        time.sleep(1.0)
    return failed
