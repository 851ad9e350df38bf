#!/usr/bin/env python3
"""Stdlib-only helpers for deploy/local/services.

Subcommands (all print diagnostics to stderr, results to stdout):

  render TEMPLATE OUT KEY=VALUE...   fill @KEY@ placeholders, fail on unknown ones
  cluster-id                         print a random Kafka cluster id (base64url uuid)
  port-free HOST PORT...             exit 1 naming the first port already bound
  launch PIDFILE LOGFILE -- CMD...   start CMD detached in its own session
  alive PIDFILE MARKER               exit 0 if the pid in PIDFILE runs and its
                                     command line contains MARKER
  session-pids SID                   print SID (if alive) and all pids in session SID
  probe-cql HOST PORT                run SELECT release_version FROM system.local
  probe-kafka HOST PORT              ApiVersions + Metadata request
  wait TIMEOUT SPEC...               wait until every SPEC answers; SPEC is
                                     name,kind,host,port,pidfile,marker,log...
                                     joined by \x1f (kind is cql or kafka)

The CQL and Kafka probes speak just enough of the wire protocols (CQL native
protocol v4, Kafka ApiVersions v0 / Metadata v1..v8) to prove the server
really answers a query, without needing any client library.

Each job lives in its own module under svc/ (see svc/__init__.py); this file
is their command line only.
"""

import inspect
import sys

from svc.cql import probe_cql
from svc.kafka import probe_kafka
from svc.supervisor import LaunchError, alive, launch, port_problem, session_pids
from svc.templates import TemplateError, cluster_id, parse_pairs, render
from svc.wait import err, wait_for
from svc.wire import ProbeError


def cmd_render(template, out, *pairs):
    try:
        render(template, out, parse_pairs(pairs))
    except TemplateError as e:
        raise SystemExit(str(e)) from None


def cmd_cluster_id():
    print(cluster_id())


def cmd_port_free(host, *ports):
    for port in ports:
        problem = port_problem(host, int(port))
        if problem is not None:
            print(port)
            err(f"port {host}:{port} is not available: {problem}")
            return 1
    return 0


def cmd_alive(pidfile, marker):
    pid = alive(pidfile, marker)
    if pid is None:
        return 1
    print(pid)
    return 0


def cmd_session_pids(sid):
    """Live processes of session SID, plus SID itself if it is alive."""
    for pid in session_pids(int(sid)):
        print(pid)
    return 0


def cmd_launch(pidfile, logfile, sep, *cmd):
    if sep != "--" or not cmd:
        raise SystemExit("launch: usage: launch PIDFILE LOGFILE -- CMD...")
    try:
        print(launch(pidfile, logfile, list(cmd)))
    except LaunchError as e:
        err(str(e))
        return 1
    return 0


def cmd_probe_cql(host, port):
    try:
        print(probe_cql(host, port))
        return 0
    except (OSError, ProbeError) as e:
        err(f"cql {host}:{port}: {e}")
        return 1


def cmd_probe_kafka(host, port):
    try:
        print(probe_kafka(host, port))
        return 0
    except (OSError, ProbeError) as e:
        err(f"kafka {host}:{port}: {e}")
        return 1


def cmd_wait(timeout, *specs):
    failed = wait_for(timeout, specs)
    if failed:
        print(" ".join(failed))
        return 1
    return 0


COMMANDS = {
    "render": cmd_render,
    "cluster-id": cmd_cluster_id,
    "port-free": cmd_port_free,
    "launch": cmd_launch,
    "alive": cmd_alive,
    "session-pids": cmd_session_pids,
    "probe-cql": cmd_probe_cql,
    "probe-kafka": cmd_probe_kafka,
    "wait": cmd_wait,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        err(__doc__)
        return 2
    func = COMMANDS[argv[1]]
    try:
        inspect.signature(func).bind(*argv[2:])
    except TypeError as e:
        err(f"{argv[1]}: bad arguments ({e})")
        return 2
    return func(*argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
