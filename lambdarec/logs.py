"""Structured logs: key=value lines on a terminal, JSON lines elsewhere (``LAMBDAREC_LOG_FORMAT=json``)."""

from __future__ import annotations

import logging
import os
import sys

import structlog

from lambdarec.masking import mask_secrets


class _Stderr:
    """Whatever ``sys.stderr`` is at write time (test runners and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _MaskingFormatter(logging.Formatter):
    """The standard library's records (drivers, uvicorn), tracebacks included, with secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def _mask_secrets(_logger: object, _method: str, event: dict) -> dict:
    """A structlog processor: URL passwords and registered secrets masked in every value, tracebacks too."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_secrets(value)
        elif not isinstance(value, int | float | bool | type(None)):
            text = repr(value)
            if (masked := mask_secrets(text)) != text:
                event[key] = masked
    return event


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process. Logs go to stderr."""
    level_name = (level or os.environ.get("LAMBDAREC_LOG_LEVEL", "INFO")).upper()
    fmt = fmt or os.environ.get("LAMBDAREC_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(_MaskingFormatter("%(message)s"))
    logging.basicConfig(level=level_name, handlers=[handler], force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A structured logger; ``log.info("snapshot.published", version=v, users=n)``.

    Logging is configured on first use if nobody did (stderr, never stdout: stdout carries --json output).
    """
    if not structlog.is_configured():
        configure_logging()
    return structlog.get_logger(name)
