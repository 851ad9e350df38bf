"""Pure ASGI middleware (no per-request task or copy): URL and body limits, JSON bodies only, per-route metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def send_problem(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    """Send a complete ``Problem`` JSON response."""
    body = json.dumps({"status": status, "message": message, "errors": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by ``Content-Length`` or while reading a chunked body.

    A chunked body is read here up to the limit and handed on whole, so the app never sees a partial body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> str:
        return (
            f"request body of {size} bytes is larger than the limit of {self.max_bytes} bytes "
            "(serving.max_body_bytes); send fewer events or users per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await send_problem(
                    send,
                    400,
                    f"Content-Length header {length.decode(errors='replace')!r} is not a non-negative integer",
                )
                return
            if int(length) > self.max_bytes:
                await send_problem(send, 413, self._too_large(int(length)), [(b"connection", b"close")])
                return
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await send_problem(
                    send, 413, self._too_large(f"more than {self.max_bytes}"), [(b"connection", b"close")]
                )
                return
            if not message.get("more_body", False):
                break
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class UrlLimit:
    """Answer 414 to a request whose target (path and query) is longer than ``max_bytes``.

    The server must have read the whole request head for this answer to arrive (the head limit,
    ``serving.max_head_bytes``, is set above ``serving.max_url_bytes`` by ``lambdarec serve``); closing on a
    half-read request would reset the connection instead of answering.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
            if size > self.max_bytes:
                await send_problem(
                    send,
                    414,
                    f"request URL of {size} bytes is longer than the limit of {self.max_bytes} bytes "
                    "(serving.max_url_bytes); send long lists in a POST body",
                )
                return
        await self.app(scope, receive, send)


def is_json_media_type(content_type: bytes | None) -> bool:
    """``application/json`` or any ``application/*+json``, whatever its parameters (``charset=utf-8``)."""
    if not content_type:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonBodiesOnly:
    """Answer 415 to a request that carries a body whose ``Content-Type`` is not JSON (every body here is JSON)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            has_body = b"transfer-encoding" in headers or (length is not None and length.strip() not in (b"", b"0"))
            if has_body and not is_json_media_type(headers.get(b"content-type")):
                given = headers.get(b"content-type", b"").decode(errors="replace")[:100] or "none"
                await send_problem(
                    send,
                    415,
                    f"request body of Content-Type {given!r} is not JSON; send it as application/json",
                    [(b"accept", b"application/json")],
                )
                return
        await self.app(scope, receive, send)


class RequestMetrics:
    """Time every HTTP request and count it by route template (``/v1/users/{user_id}/recommendations``)."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, str, int, float], None]):
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.observe(template, scope["method"], status, time.perf_counter() - started)
