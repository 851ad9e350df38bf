"""The httptools protocol's head limit on one connection, driven read by read (no socket): what it counts, and that
its 431 never overtakes the answer to a request before it."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from serving_layer.head_limit import HttpToolsHeadLimit, protocol_class

LIMIT = 16_384


class Transport:
    """What the protocol needs of an asyncio transport: everything it writes, and whether reading is paused."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = self.eof = self.paused = False

    def get_extra_info(self, key: str) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(key)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


def connection(app: Any) -> tuple[HttpToolsHeadLimit, Transport]:
    config = Config(app=app, h11_max_incomplete_event_size=LIMIT, log_config=None, lifespan="off")
    config.load()
    protocol = HttpToolsHeadLimit(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def until(done: Any, timeout_s: float = 10.0) -> None:
    """Let the loop run (the application's tasks) until ``done()``, or fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def statuses(written: bytes) -> list[int]:
    """The status of every answer written, in order (the bodies here never hold a status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", written)]


def test_the_parser_setting_picks_the_protocol() -> None:
    assert protocol_class("httptools") is HttpToolsHeadLimit
    assert protocol_class("h11").__name__ == "H11HeadLimit"


def test_a_head_over_the_limit_waits_for_the_answer_owed_before_it() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["path"] == "/slow":
                await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        protocol, transport = connection(app)
        protocol.data_received(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        protocol.data_received(b"GET /next HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 10_000)
        protocol.data_received(b"a" * 10_000)  # the head is now past the limit, the first answer still owed
        await asyncio.sleep(0.05)  # the loop runs; the first answer is held by the application
        assert transport.written == b"" and transport.paused  # nothing overtakes it; nothing more is read
        release.set()
        await until(lambda: len(statuses(transport.written)) == 2)
        assert statuses(transport.written) == [200, 431]
        body = json.loads(transport.written.rpartition(b"\r\n\r\n")[2])
        assert f"{LIMIT} bytes" in body["message"] and "serving.max_head_bytes" in body["message"]
        assert transport.eof and not transport.paused  # our side shut, the rest of the head read and dropped
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_heads_are_counted_across_reads_and_bodies_are_not() -> None:
    async def scenario() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})

        protocol, transport = connection(app)
        body = b"x" * (3 * LIMIT)
        protocol.data_received(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 4096):  # a body three times the limit, in reads of its own: not a head
            protocol.data_received(body[i : i + 4096])
        await until(lambda: len(statuses(transport.written)) == 1)
        head = b"GET /b HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (LIMIT - 100) + b"\r\n\r\n"
        for i in range(0, len(head), 1000):  # a head just under the limit, in 17 reads
            protocol.data_received(head[i : i + 1000])
        await until(lambda: len(statuses(transport.written)) == 2)
        assert statuses(transport.written) == [200, 200]
        for _ in range(LIMIT // 1000 + 2):  # a third head, over the limit only when its reads are summed
            protocol.data_received(b"X-More: " + b"b" * 990 + b"\r\n" if _ else b"GET /c HTTP/1.1\r\nHost: t\r\n")
        await until(lambda: len(statuses(transport.written)) == 3)
        assert statuses(transport.written) == [200, 200, 431]
        protocol.connection_lost(None)

    asyncio.run(scenario())
