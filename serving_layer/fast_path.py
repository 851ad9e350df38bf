"""``GET /v1/users/{user_id}/recommendations`` answered before FastAPI's routing and parameter solving.

The serving layer's hot path. FastAPI validates a request's path and query parameters through pydantic anew on
every request (about a tenth of one list's cost), and its own layers (Starlette's error middleware, FastAPI's
body-limit and telemetry wrappers) cost another tenth. :class:`FastPath` runs before all of them
(:class:`serving_layer.app.ServingApp` calls it first) and answers the usual request itself: a plain user id and
canonical parameters (``k=10``, ``offset=0``, ``explain=true``, item lists), each one within its bound. Anything
else (a bound crossed, a spelling FastAPI would parse or refuse in its own way, a repeated parameter, a URL over
``serving.max_url_bytes``, no snapshot loaded yet) goes to the middleware and FastAPI unchanged, which answer it as
before: the same body, headers, status and errors either way; the route and its OpenAPI entry stay FastAPI's. Being
outermost, it times and counts its answers itself (``lambdarec_serving_request_seconds`` and ``..._requests_total``
under the route template, as :class:`~serving_layer.middleware.RequestMetrics` would), answers an exception with
the 500 of every other route (:func:`serving_layer.errors.internal_error`), and no other middleware has anything to
do for a ``GET`` without a body. FastAPI's optional OpenTelemetry instrumentation does not see these requests;
lambdarec's Prometheus metrics do. A request's parameters are parsed once per distinct URL (the last
``PARSED_KEPT`` of at most ``PARSED_MAX_BYTES`` are kept).
"""

from __future__ import annotations

import functools
import re
import time
from typing import NamedTuple
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from lambdarec.settings import ServingSettings
from serving_layer.catalog_params import filters_of
from serving_layer.deps import parse_item_list
from serving_layer.errors import internal_error
from serving_layer.recommend import DEGRADED_HEADER, RecommendQuery
from serving_layer.service import Service
from serving_layer.user_list import user_list

TEMPLATE = "/v1/users/{user_id}/recommendations"
_PATH = re.compile(r"/v1/users/([^/]+)/recommendations")
# printable ASCII, no space at either end: a strict subset of lambdarec.events.ID_PATTERN in any regex engine
_PLAIN_ID = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_POSITIVE = re.compile(r"[1-9][0-9]{0,8}")
_NATURAL = re.compile(r"0|[1-9][0-9]{0,8}")
# the spellings pydantic reads as booleans (lower case; any other case goes to FastAPI)
_TRUE, _FALSE = ("1", "on", "t", "true", "y", "yes"), ("0", "off", "f", "false", "n", "no")
_BOOLS = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)
_HEADERS = [(b"content-type", b"application/json")]
_DEGRADED = DEGRADED_HEADER.lower().encode()
PARSED_KEPT = 10_000  # distinct (user, query string) pairs whose parsed query is kept
PARSED_MAX_BYTES = 2048  # longer query strings are not kept: the memo stays within ~PARSED_KEPT x 2 KB x 3


_UNRULED = (None, None, None)  # no categories, exclude_categories nor filter: no request filters


def _pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``; a query with nothing to decode (no ``%`` nor ``+``: the usual
    one) split without unquoting each name and value, as parse_qsl would leave them."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    return [(name, value) for name, _, value in (field.partition("=") for field in text.split("&") if field)]


class _Route(NamedTuple):
    """What :class:`~serving_layer.middleware.RequestMetrics` reads from ``scope["route"]``: the template."""

    path: str


_ROUTE = _Route(TEMPLATE)


class FastPath:
    """ASGI middleware answering the usual ``GET`` of a user's recommendations (see the module docstring)."""

    def __init__(self, app: ASGIApp, service: Service, settings: ServingSettings):
        self.app = app
        self.service = service
        self.s = settings
        # a query is a pure function of its URL and the settings: parsed once per distinct URL
        self.parsed = functools.lru_cache(maxsize=PARSED_KEPT)(self.query)

    def user_id(self, scope: Scope) -> str | None:
        """The user of a plain ``GET`` of this route, else None."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            return None
        match = _PATH.fullmatch(scope["path"])
        user_id = match.group(1) if match is not None else ""
        return user_id if len(user_id) <= self.s.max_id_chars and _PLAIN_ID.fullmatch(user_id) else None

    def query(self, user_id: str, query_string: bytes) -> RecommendQuery | None:
        """The request as a query when its parameters are plain and within bounds, else None."""
        params = _pairs(query_string.decode("latin-1"))
        given = dict(params)
        if len(given) != len(params):  # a repeated name: FastAPI's reading of it decides
            return None
        k, offset, explain = given.get("k", str(self.s.default_k)), given.get("offset", "0"), given.get("explain")
        impressions = given.get("impressions")
        plain = (
            _POSITIVE.fullmatch(k) is not None
            and int(k) <= self.s.max_k
            and _NATURAL.fullmatch(offset) is not None
            and int(offset) <= self.s.max_offset
            and (explain is None or explain in _BOOLS)
            and (impressions is None or impressions in _BOOLS)
        )
        try:
            session = parse_item_list(given.get("session_items"), self.s) or ()
            exclude = parse_item_list(given.get("exclude"), self.s) or ()
            ruled = (given.get("categories"), given.get("exclude_categories"), given.get("filter"))
            filters = filters_of(*ruled, self.s) if ruled != _UNRULED else None
        except ValueError:
            return None
        if not plain:
            return None
        return RecommendQuery(
            user_id, int(k), int(offset), session, frozenset(exclude), _BOOLS.get(explain, False),
            impressions=_BOOLS.get(impressions, False), filters=filters,
        )  # fmt: skip

    def _plain(self, scope: Scope) -> RecommendQuery | None:
        """The query of a request this path answers, else None (the stack answers it)."""
        user_id = self.user_id(scope)
        if user_id is None:
            return None
        query_string = scope["query_string"]
        if len(scope.get("raw_path") or scope["path"].encode()) + len(query_string) > self.s.max_url_bytes:
            return None  # UrlLimit's 414
        if len(query_string) > PARSED_MAX_BYTES:  # a rare long one is parsed each time, never kept
            return self.query(user_id, query_string)
        return self.parsed(user_id, query_string)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = self._plain(scope)
        if query is None or self.service.models.model is None:
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        scope["route"] = _ROUTE
        answering = False  # the response's start is on its way (as Starlette's ServerErrorMiddleware tracks it)
        try:
            body, degraded_reason, arm = await user_list(self.service, query)
            headers = [(_DEGRADED, degraded_reason.encode())] if degraded_reason else []
            headers += [(name.lower().encode(), value.encode()) for name, value in arm.items()]
            headers += [(b"content-length", str(len(body)).encode()), *_HEADERS]
            answering = True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            status = 200
            await send({"type": "http.response.body", "body": body})
        except Exception as exc:  # what Starlette's ServerErrorMiddleware does (this path runs before it): the 500
            if not answering:
                await internal_error(self.service, scope["path"], exc)(scope, receive, send)
            raise
        finally:  # what RequestMetrics records for every other request (a failure: 500, as the server answers)
            self.service.metrics.observe_request(TEMPLATE, "GET", status, time.perf_counter() - started)
