"""The Python client of the lambdarec HTTP API: ``Client`` (blocking) and ``AsyncClient`` (asyncio), on httpx.

A typed method per endpoint (``recommend``, ``recommend_many``, ``similar``, ``popular``, ``send_events``,
``send_items``, ``assignments``); a timeout per attempt; retries with exponential backoff and jitter on
connection errors and 5xx answers, never on 4xx (:class:`RetryPolicy`); the API key; and, when the service
cannot be reached, the last-known-good popular list served locally, flagged ``local_fallback``.

Example
-------
>>> from lambdarec.client import Client                                          # doctest: +SKIP
>>> recs = Client("http://recs.internal:8000", api_key="...", timeout_s=0.3)
>>> [item.item_id for item in recs.recommend("u42", k=3).items]
['i7', 'i3', 'i9']
"""

from lambdarec.client.aio import AsyncClient
from lambdarec.client.endpoints import ENDPOINTS
from lambdarec.client.errors import ApiError, LambdarecError, Unavailable
from lambdarec.client.options import ClientConfig, ManyOptions, RecommendOptions
from lambdarec.client.retry import RetryPolicy
from lambdarec.client.sync import Client
from lambdarec.client.types import (
    Assignments,
    ExperimentAssignment,
    IngestResult,
    PopularItems,
    Recommendations,
    RecommendationsBatch,
    RecommendedItem,
    Rejection,
    ScoredItem,
    SimilarItems,
)

__all__ = [
    "ENDPOINTS",
    "ApiError",
    "Assignments",
    "AsyncClient",
    "Client",
    "ClientConfig",
    "ExperimentAssignment",
    "IngestResult",
    "LambdarecError",
    "ManyOptions",
    "PopularItems",
    "RecommendOptions",
    "Recommendations",
    "RecommendationsBatch",
    "RecommendedItem",
    "Rejection",
    "RetryPolicy",
    "ScoredItem",
    "SimilarItems",
    "Unavailable",
]
