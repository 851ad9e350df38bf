"""A readiness probe for Kafka speaking just enough of its wire protocol (ApiVersions v0, Metadata v1..v8, the
non-flexible versions) to prove a broker answers with live brokers, so no client library is needed."""

from __future__ import annotations

import socket
import struct

from .wire import ProbeError, Reader, recv_exact

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
