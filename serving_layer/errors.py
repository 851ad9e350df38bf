"""Every error as a ``Problem`` body: a sentence naming the input and what would be right.

Validation errors name the parameter (``query parameter 'k'``) and, for bounded numbers, both bounds and the
setting behind them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from lambdarec.logs import get_logger

log = get_logger(__name__)


class FieldError(BaseModel):
    """One invalid input: where it was and what is wrong with it."""

    loc: list[str | int] = Field(examples=[["query", "k"]])
    msg: str
    type: str


_EXAMPLE = "query parameter 'k': must be an integer between 1 and 100 (serving.max_k); got '500'"


class Problem(BaseModel):
    """Every error body: a sentence naming the input and what would be right, and per-field details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": 422,
                    "message": _EXAMPLE,
                    "errors": [{"loc": ["query", "k"], "msg": _EXAMPLE, "type": "less_than_equal"}],
                }
            ]
        }
    )

    status: int
    message: str
    errors: list[FieldError] = Field(default_factory=list)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error codes, all with the :class:`Problem` body."""
    words = {
        401: "No API key, or an unknown one.",
        403: "The API key lacks the role this endpoint needs.",
        404: "Not found; the message names what.",
        409: "The request conflicts with the resource's state.",
        413: "The request body or batch is too large.",
        414: "The request URL is longer than `serving.max_url_bytes`.",
        415: "The request body is not `application/json`.",
        422: "A parameter or the body is invalid; the message names it and what would be right.",
        503: "Not ready: no snapshot loaded yet, or a backend is unavailable.",
    }
    return {code: {"model": Problem, "description": words[code]} for code in codes}


# parameter -> (low, high, setting naming the high bound); filled from settings by the app factory
Bounds = Mapping[str, tuple[int, int, str]]
_BOUND_TYPES = {
    "greater_than_equal",
    "less_than_equal",
    "greater_than",
    "less_than",
    "int_parsing",
    "int_type",
    "int_from_float",
}
_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}


def _where(loc: Sequence[Any]) -> str:
    if not loc:
        return "request"
    head, rest = str(loc[0]), [str(p) for p in loc[1:]]
    if head == "body" and not rest:
        return "request body"
    name = ".".join(rest) if rest else head
    return f"{_WHERE.get(head, head)} '{name}'"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(error: Mapping[str, Any], bounds: Bounds) -> str:
    """One validation error as ``"<where>: <what is wrong>; got <value>"``."""
    loc = tuple(error.get("loc", ()))
    name = str(loc[-1]) if loc else ""
    got = f"; got {_short(error['input'])}" if "input" in error and error.get("type") != "missing" else ""
    if name in bounds and error.get("type") in _BOUND_TYPES:
        low, high, setting = bounds[name]
        return f"{_where(loc)}: must be an integer between {low} and {high} ({setting}){got}"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{_where(loc)}: {msg}{got}"


def problem(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, "errors": errors or []}, status, headers=headers)


def internal_error(service: Any, path: str, exc: Exception) -> JSONResponse:
    """The 500 of an unhandled exception: logged with its traceback (``serving.unhandled``), counted in
    ``lambdarec_serving_errors_total`` (when ``service`` is given), a ``Problem`` that points at the log."""
    log.error("serving.unhandled", path=path, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    if service is not None:
        service.metrics.errors.labels(type(exc).__name__).inc()
    return problem(500, "internal error; the server log has the details")


def install(app: FastAPI, bounds: Bounds) -> None:
    """Register the handlers on ``app``."""

    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                "msg": describe(e, bounds),
                "type": str(e.get("type", "invalid")),
            }
            for e in exc.errors()
        ]
        return problem(422, "; ".join(e["msg"] for e in errors) or "invalid request", errors)

    async def on_http(_request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(getattr(request.app.state, "service", None), request.url.path, exc)

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_error)
