"""uvicorn's h11 protocol, answering a request head beyond ``serving.max_head_bytes`` with 431, not 400.

h11 gives up on a head (request line and headers) longer than its limit with an error that hints 431 (Request
Header Fields Too Large); uvicorn answers every parse error with a plain-text 400 and closes at once, so a client
still sending the rest of its head gets a connection reset instead of the answer. This protocol sends a
:class:`~serving_layer.errors.Problem` body naming the limit and its setting, then closes gracefully: it shuts its
side, and reads and drops what the client still sends for up to ``LINGERING_CLOSE_S`` seconds.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TOO_LARGE = 431
HEAD_LIMIT_SETTING = "serving.max_head_bytes"
H11_DEFAULT_HEAD_LIMIT = 16 * 1024  # h11's documented default, when the server sets none
LINGERING_CLOSE_S = 5.0  # as nginx's lingering_timeout: long enough for a client to finish sending its head


class _HintedConnection(h11.Connection):
    """An h11 connection that remembers the status h11 suggests for the peer's last protocol error."""

    error_status = 400

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise


class HeadLimitProtocol(H11Protocol):
    """:class:`H11Protocol` with a 431 :class:`Problem` answer and a lingering close for an oversized head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.head_limit = H11_DEFAULT_HEAD_LIMIT if limit is None else limit
        self.conn = _HintedConnection(h11.SERVER, max_incomplete_event_size=self.head_limit)
        self._draining = False

    def data_received(self, data: bytes) -> None:
        if self._draining:  # the answer is sent; what still arrives is dropped, never buffered
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if self.conn.error_status != HEAD_TOO_LARGE:
            super().send_400_response(msg)
            return
        message = (
            f"request line and headers longer than the limit of {self.head_limit} bytes ({HEAD_LIMIT_SETTING}); "
            "send large values in the body"
        )
        self.logger.warning("431: %s", message)
        body = json.dumps({"status": HEAD_TOO_LARGE, "message": message, "errors": []}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=HEAD_TOO_LARGE, headers=headers, reason=b"Request Header Fields Too Large")
        self.transport.write(self.conn.send(response) + self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self._linger()

    def _linger(self) -> None:
        """Shut our side and drain the peer's for a while: closing on unread data would reset the connection,
        and the client would lose the answer."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self._draining = True
        self.flow.resume_reading()
        self.loop.call_later(LINGERING_CLOSE_S, self.transport.close)
