"""``Client``: the blocking client (httpx), one typed method per endpoint.

Example
-------
>>> with Client("http://recs.internal:8000", api_key=KEY, timeout_s=0.3) as recs:     # doctest: +SKIP
...     page = recs.recommend("u42", k=10, session_items=["i3"])
...     recs.send_events([{"event_id": "e1", "user_id": "u42", "item_id": page.items[0].item_id,
...                        "event_type": "click", "timestamp": time.time(),
...                        "context": {"experiment": page.experiment, "arm": page.arm}}])
>>> page.local_fallback       # True when the service was unreachable and the list is the last popular one
False
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Unpack

import httpx

import lambdarec.client.endpoints as calls
import lambdarec.client.types as api
from lambdarec.client.core import CONTENT, Attempts, ClientBase
from lambdarec.client.endpoints import Call
from lambdarec.client.errors import LambdarecError
from lambdarec.client.options import ClientConfig, ManyOptions, RecommendOptions, Window


class Client(ClientBase):
    """A blocking client of one lambdarec service; see :class:`~lambdarec.client.options.ClientConfig` for the
    keyword arguments. Safe to share between threads (httpx's pool); close it, or use it as a context manager."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None, **config: Any):
        super().__init__(ClientConfig(base_url, **config))
        c = self.config
        self.http = httpx.Client(base_url=c.base_url, headers=c.headers(), timeout=c.timeout(), transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---- endpoints --------------------------------------------------------------------------------------------

    def recommend(self, user_id: str, **options: Unpack[RecommendOptions]) -> api.Recommendations:
        """``GET /v1/users/{user_id}/recommendations``: the user's list (see :class:`RecommendOptions`)."""
        return self._run(self._recommend_call(user_id, options))

    def recommend_many(self, **options: Unpack[ManyOptions]) -> api.RecommendationsBatch:
        """``POST /v1/recommendations``: one list per user, or one anonymous list (see :class:`ManyOptions`)."""
        return self._run(self._many_call(options))

    def similar(self, item_id: str, k: int | None = None) -> api.SimilarItems:
        """``GET /v1/items/{item_id}/similar``; :class:`ApiError` 404 for an unknown item."""
        return self._run(calls.similar(item_id, k))

    def popular(self, k: int | None = None, window: Window = "recent") -> api.PopularItems:
        """``GET /v1/popular``: the most popular items of the served snapshot."""
        return self._run(calls.popular(k, window))

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> api.IngestResult:
        """``POST /v1/events`` (API key): valid events are appended, the others reported; resending is safe."""
        return self._run(calls.send_events(events))

    def send_items(self, items: Iterable[Mapping[str, Any]]) -> api.IngestResult:
        """``POST /v1/items`` (API key): upsert catalog items; resending is safe."""
        return self._run(calls.send_items(items))

    def assignments(self, user_id: str) -> api.Assignments:
        """``GET /v1/users/{user_id}/assignments``: the user's arm in every experiment."""
        return self._run(calls.assignments(user_id))

    # ---- the attempt loop ---------------------------------------------------------------------------------------

    def _run(self, call: Call) -> Any:
        try:
            value = self._kept(call, self._attempt(call))
        except LambdarecError as error:
            return self._local(call, error)
        if self._popular_due(call):
            try:
                self._kept(self._popular_call(), self._attempt(self._popular_call()))
            except LambdarecError:
                self.last_popular.fetched_at = time.monotonic()  # keep the old list; try again in a while
        return value

    def _attempt(self, call: Call) -> Any:
        attempts = Attempts(call, self.config)
        while True:
            response, error = None, None
            try:
                response = self.http.request(call.method, call.path, params=call.params, content=call.content(),
                                             headers=CONTENT if call.body is not None else None)  # fmt: skip
            except httpx.TransportError as exc:
                error = exc
            if attempts.settle(response, error):
                return attempts.value
            time.sleep(attempts.wait)
