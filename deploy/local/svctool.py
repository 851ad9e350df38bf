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
"""

import base64
import inspect
import os
import re
import socket
import struct
import sys
import time
import uuid


def err(msg):
    print(msg, file=sys.stderr, flush=True)


class ProbeError(Exception):
    pass


# --------------------------------------------------------------------------
# small utilities


def cmd_render(template, out, *pairs):
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"render: expected KEY=VALUE, got {pair!r}")
        values[key] = value
    with open(template, encoding="utf-8") as f:
        text = f.read()
    missing = sorted({k for k in re.findall(r"@([A-Z][A-Z0-9_]*)@", text) if k not in values})
    if missing:
        raise SystemExit("render: {}: no value for {}".format(template, ", ".join(missing)))
    text = re.sub(r"@([A-Z][A-Z0-9_]*)@", lambda m: values[m.group(1)], text)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)


def cmd_cluster_id():
    print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))


def cmd_port_free(host, *ports):
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Java and Netty servers set SO_REUSEADDR, so TIME_WAIT leftovers from a
        # previous run are no obstacle; test the same way.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as e:
            print(port)
            err(f"port {host}:{port} is not available: {e.strerror}")
            return 1
        finally:
            s.close()
    return 0


def read_pid(pidfile):
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pid_state(pid):
    """Process state letter from /proc (R, S, Z, ...), or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def pid_matches(pid, marker):
    state = pid_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return marker in cmdline


def cmd_alive(pidfile, marker):
    pid = read_pid(pidfile)
    if pid is not None and pid_matches(pid, marker):
        print(pid)
        return 0
    return 1


def cmd_session_pids(sid):
    """Live processes of session SID, plus SID itself if it is alive."""
    sid = int(sid)
    if pid_state(sid) not in (None, "Z", "X"):
        print(sid)
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
            print(name)
    return 0


def cmd_launch(pidfile, logfile, sep, *cmd):
    """Double-fork CMD into a new session (so `kill -- -PID` reaches the whole
    group), detached from our stdio, reparented to init; write its pid."""
    if sep != "--" or not cmd:
        raise SystemExit("launch: usage: launch PIDFILE LOGFILE -- CMD...")
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
        err(f"launch: could not start {cmd[0]}")
        return 1
    print(read_pid(pidfile))
    return 0


# --------------------------------------------------------------------------
# socket helpers


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by server")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProbeError("truncated response")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int8(self):
        return struct.unpack(">b", self.take(1))[0]

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def uint16(self):
        return struct.unpack(">H", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string16(self):
        n = self.int16()
        if n < 0:
            return None
        return self.take(n).decode("utf-8", "replace")

    def bytes32(self):
        n = self.int32()
        if n < 0:
            return None
        return self.take(n)


# --------------------------------------------------------------------------
# CQL native protocol v4 (just STARTUP + QUERY)

CQL_VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x03, 0x07, 0x08


def cql_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def cql_frame(stream, opcode, body):
    return struct.pack(">BBhBi", CQL_VERSION, 0, stream, opcode, len(body)) + body


def cql_read_frame(sock):
    version, _flags, stream, opcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    if version & 0x7F != CQL_VERSION:
        raise ProbeError(f"unexpected CQL protocol version 0x{version:02x}")
    body = recv_exact(sock, length) if length else b""
    if opcode == OP_ERROR:
        r = Reader(body)
        code = r.int32()
        raise ProbeError(f"CQL error 0x{code:04x}: {r.string16()}")
    return stream, opcode, body


def cql_skip_type(r):
    tid = r.uint16()
    if tid == 0x0000:  # custom
        r.string16()
    elif tid in (0x0020, 0x0022):  # list, set
        cql_skip_type(r)
    elif tid == 0x0021:  # map
        cql_skip_type(r)
        cql_skip_type(r)
    elif tid == 0x0030:  # UDT
        r.string16()
        r.string16()
        for _ in range(r.uint16()):
            r.string16()
            cql_skip_type(r)
    elif tid == 0x0031:  # tuple
        for _ in range(r.uint16()):
            cql_skip_type(r)
    return tid


def cql_query(host, port, query, timeout=5.0):
    """Run QUERY at consistency ONE; return rows as lists of raw bytes."""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        body = struct.pack(">H", 1) + cql_string("CQL_VERSION") + cql_string("3.0.0")
        sock.sendall(cql_frame(0, OP_STARTUP, body))
        _, opcode, _ = cql_read_frame(sock)
        if opcode == OP_AUTHENTICATE:
            raise ProbeError("server requires authentication")
        if opcode != OP_READY:
            raise ProbeError(f"unexpected reply 0x{opcode:02x} to STARTUP")
        q = query.encode()
        body = struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0x00)
        sock.sendall(cql_frame(1, OP_QUERY, body))
        _, opcode, body = cql_read_frame(sock)
        if opcode != OP_RESULT:
            raise ProbeError(f"unexpected reply 0x{opcode:02x} to QUERY")
    r = Reader(body)
    kind = r.int32()
    if kind != 2:
        raise ProbeError("QUERY result kind %d is not Rows" % kind)
    flags = r.int32()
    ncols = r.int32()
    if flags & 0x0002:
        r.bytes32()  # paging state
    if not flags & 0x0004:  # metadata present
        global_spec = flags & 0x0001
        if global_spec:
            r.string16()
            r.string16()
        for _ in range(ncols):
            if not global_spec:
                r.string16()
                r.string16()
            r.string16()
            cql_skip_type(r)
    rows = []
    for _ in range(r.int32()):
        rows.append([r.bytes32() for _ in range(ncols)])
    return rows


def probe_cql(host, port):
    rows = cql_query(host, port, "SELECT release_version FROM system.local")
    if not rows or rows[0][0] is None:
        raise ProbeError("system.local returned no release_version")
    return "release_version {}".format(rows[0][0].decode("utf-8", "replace"))


def cmd_probe_cql(host, port):
    try:
        print(probe_cql(host, port))
        return 0
    except (OSError, ProbeError) as e:
        err(f"cql {host}:{port}: {e}")
        return 1


# --------------------------------------------------------------------------
# Kafka wire protocol (ApiVersions v0, Metadata v1..v8, non-flexible versions)

API_METADATA, API_VERSIONS = 3, 18


def kafka_request(sock, api_key, version, corr, body):
    client = b"lambdarec-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    r = Reader(recv_exact(sock, size))
    if r.int32() != corr:
        raise ProbeError("correlation id mismatch")
    return r


def probe_kafka(host, port):
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        r = kafka_request(sock, API_VERSIONS, 0, 1, b"")
        code = r.int16()
        if code != 0:
            raise ProbeError("ApiVersions error code %d" % code)
        ranges = {}
        for _ in range(r.int32()):
            key, lo, hi = r.int16(), r.int16(), r.int16()
            ranges[key] = (lo, hi)
        if API_METADATA not in ranges:
            raise ProbeError("broker does not offer the Metadata API")
        lo, hi = ranges[API_METADATA]
        version = min(hi, 8)
        if version < max(lo, 1):
            raise ProbeError("no common Metadata version (broker offers %d..%d)" % (lo, hi))
        body = struct.pack(">i", 0)  # empty topic list: brokers only
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            body += b"\x00\x00"  # include cluster / topic authorized operations
        r = kafka_request(sock, API_METADATA, version, 2, body)
    if version >= 3:
        r.int32()  # throttle_time_ms
    brokers = []
    for _ in range(r.int32()):
        node, bhost, bport = r.int32(), r.string16(), r.int32()
        r.string16()  # rack
        brokers.append((node, bhost, bport))
    cluster_id = r.string16() if version >= 2 else None
    controller = r.int32()
    if not brokers:
        raise ProbeError("metadata lists no live broker yet")
    return "cluster %s, controller %d, brokers %s" % (
        cluster_id,
        controller,
        ", ".join("%d@%s:%d" % b for b in brokers),
    )


def cmd_probe_kafka(host, port):
    try:
        print(probe_kafka(host, port))
        return 0
    except (OSError, ProbeError) as e:
        err(f"kafka {host}:{port}: {e}")
        return 1


# --------------------------------------------------------------------------
# waiting for several services at once

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


def cmd_wait(timeout, *specs):
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
