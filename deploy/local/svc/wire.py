"""What both readiness probes share: reading exactly n bytes off a socket, and a big-endian field reader."""

from __future__ import annotations

import struct


class ProbeError(Exception):
    """The server answered, but not as a ready server would (or closed the connection)."""


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
