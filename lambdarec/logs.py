"""Structured logs: key=value lines on a terminal, JSON lines elsewhere (``LAMBDAREC_LOG_FORMAT=json``).

One format per stream: the libraries' stdlib loggers (kafka-python, cassandra-driver, uvicorn, ray) and Python
warnings render through the same processors as lambdarec's own logs, with their logger's name under ``logger``.
Levels map one to one (``WARNING`` is ``"warning"``), except that the client libraries' INFO chatter (kafka-python's
"Resetting offset", cassandra-driver's connection notes) shows only at ``LAMBDAREC_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from lambdarec.masking import mask_secrets

# Client libraries whose INFO lines describe their own connection handling: ours at DEBUG, theirs at WARNING.
QUIET_LIBRARIES = ("kafka", "cassandra")


class _Stderr:
    """Whatever ``sys.stderr`` is at write time (test runners and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


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
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _mask_secrets,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=level_name, handlers=[handler], force=True)
    logging.captureWarnings(True)
    quiet = logging.DEBUG if logging.getLevelName(level_name) == logging.DEBUG else logging.WARNING
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
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
