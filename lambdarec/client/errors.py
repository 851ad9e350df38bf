"""What the client raises: :class:`ApiError` for an answer that is an error (4xx, or 5xx after the retries),
:class:`Unavailable` when the service could not be reached at all."""

from __future__ import annotations

from typing import Any


class LambdarecError(Exception):
    """Any failure of a client call."""


class ApiError(LambdarecError):
    """The service answered with an error status; ``detail`` is its ``Problem`` body's message (naming the
    input at fault), ``body`` the whole body."""

    def __init__(self, status: int, detail: str, body: Any = None, retry_after_s: float | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body
        self.retry_after_s = retry_after_s


class Unavailable(LambdarecError):
    """No answer after every attempt (connection refused or reset, timeouts); ``attempts`` made."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts
