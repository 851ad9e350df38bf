"""One description per endpoint the client calls: how to build the request and how to read the answer.

``Client`` and ``AsyncClient`` share these, so the two differ only in how they wait for the network.
:data:`ENDPOINTS` names the route (method and OpenAPI path template) behind each client method; a test checks
each against the served OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from lambdarec.client.errors import ApiError
from lambdarec.client.types import (
    Assignments,
    IngestResult,
    PopularItems,
    Recommendations,
    RecommendationsBatch,
    SimilarItems,
)

# client method -> (HTTP method, path template, response type)
ENDPOINTS: dict[str, tuple[str, str, type]] = {
    "recommend": ("GET", "/v1/users/{user_id}/recommendations", Recommendations),
    "recommend_many": ("POST", "/v1/recommendations", RecommendationsBatch),
    "similar": ("GET", "/v1/items/{item_id}/similar", SimilarItems),
    "popular": ("GET", "/v1/popular", PopularItems),
    "send_events": ("POST", "/v1/events", IngestResult),
    "send_items": ("POST", "/v1/items", IngestResult),
    "assignments": ("GET", "/v1/users/{user_id}/assignments", Assignments),
}


@dataclass(frozen=True)
class Filters:
    """The catalog's request filters of a recommendations call: ``categories`` (any of), ``exclude_categories``,
    and ``filter``, an attribute expression such as ``brand=acme;price<=50``."""

    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    filter: str | None = None

    def __bool__(self) -> bool:
        return bool(self.categories or self.exclude_categories or self.filter is not None)


@dataclass(frozen=True)
class Call:
    """One request: which endpoint, its path, query parameters and JSON body."""

    name: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    user_id: str | None = None  # whom a recommendations call is for (its local fallback names them)
    filtered: bool = False  # the call has catalog filters: no local fallback can honour them

    @property
    def method(self) -> str:
        return ENDPOINTS[self.name][0]

    @property
    def returns(self) -> type:
        return ENDPOINTS[self.name][2]

    def content(self) -> bytes | None:
        return None if self.body is None else msgspec.json.encode(self.body)


def _path(name: str, **ids: str) -> str:
    return ENDPOINTS[name][1].format(**{key: quote(value, safe="") for key, value in ids.items()})


def _flag(value: bool) -> str:
    return "true" if value else "false"


def recommend(
    user_id: str,
    k: int | None,
    offset: int,
    session_items: Iterable[str],
    exclude: Iterable[str],
    explain: bool,
    impressions: bool,
    filters: Filters | None = None,
) -> Call:
    params = {"offset": str(offset)} if offset else {}
    if k is not None:
        params["k"] = str(k)
    if session := list(session_items):
        params["session_items"] = ",".join(session)
    if excluded := list(exclude):
        params["exclude"] = ",".join(excluded)
    if explain:
        params["explain"] = _flag(explain)
    if impressions:
        params["impressions"] = _flag(impressions)
    filters = filters or Filters()
    if filters.categories:
        params["categories"] = ",".join(filters.categories)
    if filters.exclude_categories:
        params["exclude_categories"] = ",".join(filters.exclude_categories)
    if filters.filter is not None:
        params["filter"] = filters.filter
    return Call("recommend", _path("recommend", user_id=user_id), params, user_id=user_id, filtered=bool(filters))


def recommend_many(
    users: Iterable[str],
    items: Iterable[str],
    exclude: Iterable[str],
    k: int | None,
    offset: int,
    explain: bool,
    session_id: str | None,
    impressions: bool,
    filters: Filters | None = None,
) -> Call:
    body: dict[str, Any] = {"users": list(users), "items": list(items), "exclude": list(exclude), "offset": offset,
                            "explain": explain, "impressions": impressions}  # fmt: skip
    if k is not None:
        body["k"] = k
    if session_id is not None:
        body["session_id"] = session_id
    filters = filters or Filters()
    if filters:
        body |= {"categories": list(filters.categories), "exclude_categories": list(filters.exclude_categories),
                 "filter": filters.filter}  # fmt: skip
    return Call("recommend_many", ENDPOINTS["recommend_many"][1], body=body, filtered=bool(filters))


def similar(item_id: str, k: int | None) -> Call:
    return Call("similar", _path("similar", item_id=item_id), {} if k is None else {"k": str(k)})


def popular(k: int | None, window: Literal["recent", "all"]) -> Call:
    params = {"window": window} | ({} if k is None else {"k": str(k)})
    return Call("popular", ENDPOINTS["popular"][1], params)


def send_events(events: Iterable[Mapping[str, Any] | msgspec.Struct]) -> Call:
    return Call("send_events", ENDPOINTS["send_events"][1], body=list(events))


def send_items(items: Iterable[Mapping[str, Any]]) -> Call:
    return Call("send_items", ENDPOINTS["send_items"][1], body=list(items))


def assignments(user_id: str) -> Call:
    return Call("assignments", _path("assignments", user_id=user_id))


def read(call: Call, response: httpx.Response) -> Any:
    """The decoded body of a successful answer; :class:`ApiError` for an error status."""
    if response.status_code >= 400:
        raise api_error(response)
    return msgspec.json.decode(response.content, type=call.returns)


def api_error(response: httpx.Response) -> ApiError:
    """The error an answer stands for, with the ``Problem`` body's ``message`` when it has one."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    detail = (body.get("message") or body.get("detail")) if isinstance(body, dict) else None  # a Problem body
    retry_after = response.headers.get("retry-after")
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    return ApiError(response.status_code, str(detail or response.reason_phrase or "error"), body, wait)
