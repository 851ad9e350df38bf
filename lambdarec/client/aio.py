"""``AsyncClient``: the asyncio client (httpx), the same typed methods as ``Client``, each a coroutine.

Example
-------
>>> async with AsyncClient("http://recs.internal:8000", timeout_s=0.3) as recs:      # doctest: +SKIP
...     page = await recs.recommend("u42", k=10)
"""

from __future__ import annotations

import asyncio
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


class AsyncClient(ClientBase):
    """An asyncio client of one lambdarec service (the keyword arguments of :class:`ClientConfig`); use it as
    an async context manager, or ``await client.aclose()``."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None, **config: Any):
        super().__init__(ClientConfig(base_url, **config))
        c = self.config
        self.http = httpx.AsyncClient(
            base_url=c.base_url, headers=c.headers(), timeout=c.timeout(), transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def recommend(self, user_id: str, **options: Unpack[RecommendOptions]) -> api.Recommendations:
        """See :meth:`Client.recommend`."""
        return await self._run(self._recommend_call(user_id, options))

    async def recommend_many(self, **options: Unpack[ManyOptions]) -> api.RecommendationsBatch:
        """See :meth:`Client.recommend_many`."""
        return await self._run(self._many_call(options))

    async def similar(self, item_id: str, k: int | None = None) -> api.SimilarItems:
        """See :meth:`Client.similar`."""
        return await self._run(calls.similar(item_id, k))

    async def popular(self, k: int | None = None, window: Window = "recent") -> api.PopularItems:
        """See :meth:`Client.popular`."""
        return await self._run(calls.popular(k, window))

    async def send_events(self, events: Iterable[Mapping[str, Any]]) -> api.IngestResult:
        """See :meth:`Client.send_events`."""
        return await self._run(calls.send_events(events))

    async def send_items(self, items: Iterable[Mapping[str, Any]]) -> api.IngestResult:
        """See :meth:`Client.send_items`."""
        return await self._run(calls.send_items(items))

    async def assignments(self, user_id: str) -> api.Assignments:
        """See :meth:`Client.assignments`."""
        return await self._run(calls.assignments(user_id))

    async def _run(self, call: Call) -> Any:
        try:
            value = self._kept(call, await self._attempt(call))
        except LambdarecError as error:
            return self._local(call, error)
        if self._popular_due(call):
            refresh = self._popular_call()
            try:
                self._kept(refresh, await self._attempt(refresh))
            except LambdarecError:
                self.last_popular.fetched_at = time.monotonic()  # keep the old list; try again in a while
        return value

    async def _attempt(self, call: Call) -> Any:
        attempts = Attempts(call, self.config)
        while True:
            response, error = None, None
            try:
                response = await self.http.request(
                    call.method, call.path, params=call.params, content=call.content(),
                    headers=CONTENT if call.body is not None else None,
                )  # fmt: skip
            except httpx.TransportError as exc:
                error = exc
            if attempts.settle(response, error):
                return attempts.value
            await asyncio.sleep(attempts.wait)
