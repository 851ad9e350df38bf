"""uvicorn's HTTP/1.1 protocols, answering a request head beyond ``serving.max_head_bytes`` with 431, not 400.

``serving.http_parser`` picks the parser: ``httptools`` (llhttp, in C: the default; 1.2x to 1.6x the requests a
core serves) or ``h11`` (pure Python). Either way a head (request line and headers) longer than the limit gets a
:class:`~serving_layer.errors.Problem` body naming the limit and its setting, and a graceful close: the server shuts
its side, and reads and drops what the client still sends for up to ``LINGERING_CLOSE_S`` seconds, so a client still
sending the rest of its head reads the answer instead of a connection reset.

* h11 gives up on a head longer than its limit with an error that hints 431, which uvicorn would answer with a
  plain-text 400 and an immediate close; :class:`H11HeadLimit` answers the 431 instead.
* llhttp has no limit of its own (httptools would buffer a head of any size), so :class:`HttpToolsHeadLimit`
  counts the bytes of a head still incomplete after each read and answers 431 once they pass the limit. It also
  takes a request target over the 65,535 bytes httptools' URL parser reads, which would be a 400, so that
  ``serving.max_url_bytes`` decides about it as about any other (a 414 naming it at the default).

Example
-------
>>> protocol_class("httptools").__name__
'HttpToolsHeadLimit'
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TOO_LARGE = 431
HEAD_LIMIT_SETTING = "serving.max_head_bytes"
DEFAULT_HEAD_LIMIT = 16 * 1024  # h11's documented default, when the server sets none
LINGERING_CLOSE_S = 5.0  # as nginx's lingering_timeout: long enough for a client to finish sending its head
URL_PARSE_LIMIT = 65535  # the longest request target httptools' URL parser reads (16-bit offsets)
HttpParser = Literal["httptools", "h11"]


def head_too_large(limit: int) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """The 431 answer for a head over ``limit`` bytes: its message, headers and Problem body."""
    message = (
        f"request line and headers longer than the limit of {limit} bytes ({HEAD_LIMIT_SETTING}); "
        "send large values in the body"
    )
    body = json.dumps({"status": HEAD_TOO_LARGE, "message": message, "errors": []}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return message, headers, body


class _Lingering:
    """A protocol with the head limit that, once it has answered, shuts its side and drains the peer's for a while:
    closing on unread data would reset the connection, and the client would lose the answer."""

    config: Any
    transport: Any
    flow: Any
    loop: Any
    logger: Any
    _draining = False

    @property
    def head_limit(self) -> int:
        """``serving.max_head_bytes``, as ``lambdarec serve`` hands it to uvicorn."""
        limit = self.config.h11_max_incomplete_event_size
        return DEFAULT_HEAD_LIMIT if limit is None else limit

    def _too_large(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The 431 answer's headers and body (logged)."""
        message, headers, body = head_too_large(self.head_limit)
        self.logger.warning("431: %s", message)
        return headers, body

    def _linger(self) -> None:
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._draining = True
        self.flow.resume_reading()
        self.loop.call_later(LINGERING_CLOSE_S, self.transport.close)


class _HintedConnection(h11.Connection):
    """An h11 connection that remembers the status h11 suggests for the peer's last protocol error."""

    error_status = 400

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise


class H11HeadLimit(_Lingering, H11Protocol):
    """:class:`H11Protocol` with a 431 Problem answer and a lingering close for an oversized head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _HintedConnection(h11.SERVER, max_incomplete_event_size=self.head_limit)

    def data_received(self, data: bytes) -> None:
        if self._draining:  # the answer is sent; what still arrives is dropped, never buffered
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if self.conn.error_status != HEAD_TOO_LARGE:
            super().send_400_response(msg)
            return
        headers, body = self._too_large()
        response = h11.Response(status_code=HEAD_TOO_LARGE, headers=headers, reason=b"Request Header Fields Too Large")
        self.transport.write(self.conn.send(response) + self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self._linger()


class HttpToolsHeadLimit(_Lingering, HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that answers 431 once a head still incomplete passes the limit.

    A read that starts inside a head and leaves it incomplete is counted whole; a read that completes a head
    resets the count, so neither a body nor the next pipelined request counts against a head. A read that ends one
    message and starts the next head is not counted: a head is buffered at most one read past the limit. A 431
    owed while earlier pipelined requests are still being answered waits for them (h11 reads nothing meanwhile)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the connection's first bytes are a head
        self._heads = 0  # heads completed on this connection
        self._head_bytes = 0
        self._owed_431 = False  # a head passed the limit while earlier requests were still being answered

    def data_received(self, data: bytes) -> None:
        if self._draining:  # the answer is sent; what still arrives is dropped, never parsed
            return
        in_head, heads = self._in_head, self._heads
        super().data_received(data)
        if in_head and self._heads == heads and not self.transport.is_closing():
            self._head_bytes += len(data)  # every byte of this read belongs to the head still incomplete
            if self._head_bytes > self.head_limit:
                self._refuse_head()

    def _refuse_head(self) -> None:
        """Answer 431 now, or after the answers still owed to requests before it on this connection (pipelined):
        answers go out in request order. Until then nothing more is read."""
        if self._answers_owed():
            self._owed_431 = self._draining = True  # nothing more is parsed
            self.flow.pause_reading()
            return
        self._send_431()

    def _answers_owed(self) -> bool:
        """Whether a request before the current head still waits for (or is sending) its answer."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # resumes reading, starts the next pipelined request
        if not self._owed_431 or self.transport.is_closing():
            return
        if self._answers_owed():
            self.flow.pause_reading()  # still answers owed before the 431
            return
        self._owed_431 = False
        self._send_431()

    def on_headers_complete(self) -> None:
        self._in_head, self._heads, self._head_bytes = False, self._heads + 1, 0
        url = self.url
        if len(url) <= URL_PARSE_LIMIT:
            super().on_headers_complete()
            return
        # httptools' URL parser refuses a target this long: the request starts on a stand-in target, and its
        # scope gets the real path and query before the application runs (it starts on the loop's next turn),
        # so `serving.max_url_bytes` decides, as for any URL: a 414 naming it, or an answer where it allows more
        self.url = b"/"
        super().on_headers_complete()
        self.url = url
        target = url.split(b"#", 1)[0]
        if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":  # absolute-form
            target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
        raw_path, _, query = target.partition(b"?")
        path = raw_path.decode("ascii")  # as uvicorn decodes any target (a non-ASCII one: its 400)
        self.scope["path"] = self.root_path + (urllib.parse.unquote(path) if "%" in path else path)
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = query

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows on this connection is the next head

    def _send_431(self) -> None:
        headers, body = self._too_large()
        lines = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join(lines) + b"\r\n" + body)
        self._linger()


def protocol_class(parser: HttpParser) -> type:
    """The uvicorn ``http`` protocol class for ``serving.http_parser``."""
    return H11HeadLimit if parser == "h11" else HttpToolsHeadLimit
