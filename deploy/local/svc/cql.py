"""A readiness probe for Cassandra speaking just enough of the CQL native protocol v4 (STARTUP + QUERY) to run
``SELECT release_version FROM system.local``, so no driver is needed."""

from __future__ import annotations

import socket
import struct

from .wire import ProbeError, Reader, recv_exact

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
