"""The keyword options of the client's methods (typed ``**options``), and the settings every client shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import httpx

from lambdarec.client.retry import RetryPolicy


class RecommendOptions(TypedDict, total=False):
    """Options of ``recommend``: ``k`` (default: the service's), ``offset``, the session's items (oldest first),
    items to ``exclude``, ``explain`` (reasons and score parts), ``impressions`` (serving writes the impression
    event; the list's ``impression_id`` names it), and the catalog's request filters: ``categories`` (any of),
    ``exclude_categories`` and ``filter`` (e.g. ``"brand=acme;price<=50"``). A list with filters is never answered
    from the local fallback, which cannot apply them."""

    k: int | None
    offset: int
    session_items: Sequence[str]
    exclude: Sequence[str]
    explain: bool
    impressions: bool
    categories: Sequence[str]
    exclude_categories: Sequence[str]
    filter: str | None


class ManyOptions(TypedDict, total=False):
    """Options of ``recommend_many``: ``users`` (one list each; none: one anonymous list), basket or session
    ``items``, ``exclude``, ``k``, ``offset``, ``explain``, ``session_id`` (assigns an anonymous list to an
    experiment arm), ``impressions``, and the request filters ``categories``, ``exclude_categories``, ``filter``."""

    users: Sequence[str]
    items: Sequence[str]
    exclude: Sequence[str]
    k: int | None
    offset: int
    explain: bool
    session_id: str | None
    impressions: bool
    categories: Sequence[str]
    exclude_categories: Sequence[str]
    filter: str | None


Window = Literal["recent", "all"]

RECOMMEND_DEFAULTS: RecommendOptions = {"k": None, "offset": 0, "session_items": (), "exclude": (), "explain": False,
                                        "impressions": False, "categories": (), "exclude_categories": (),
                                        "filter": None}  # fmt: skip
MANY_DEFAULTS: ManyOptions = {"users": (), "items": (), "exclude": (), "k": None, "offset": 0, "explain": False,
                              "session_id": None, "impressions": False, "categories": (), "exclude_categories": (),
                              "filter": None}  # fmt: skip


@dataclass(frozen=True)
class ClientConfig:
    """How a client talks to the service.

    ``timeout_s`` bounds each attempt (connect, read, write, pool); ``retry`` the attempts; ``api_key`` is sent as
    ``Authorization: Bearer KEY`` (needed by ``send_events`` and ``send_items``); ``fallback`` serves the
    last-known-good popular list when the service cannot be reached, refreshed every ``popular_refresh_s``
    from ``GET /v1/popular?k=popular_k`` after a successful call.
    """

    base_url: str
    api_key: str | None = None
    timeout_s: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fallback: bool = True
    popular_refresh_s: float = 300.0
    popular_k: int = 100
    default_k: int = 10  # the list length of a local fallback when ``k`` is not given

    def headers(self) -> dict[str, str]:
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"Accept": "application/json", "User-Agent": "lambdarec-client"} | auth

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s)
