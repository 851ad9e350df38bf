"""Request and response bodies of the HTTP API, declared so the OpenAPI document is exact: one module per resource,
as in ``routes/``, all importable from here."""

from serving_layer.schemas.catalog import Item, ItemIn, ItemsResult
from serving_layer.schemas.events import EventIn, IngestResult, Rejection
from serving_layer.schemas.health import Liveness, Readiness
from serving_layer.schemas.items import PopularItems, ScoredItem, SimilarItems
from serving_layer.schemas.recommendations import (
    Recommendations,
    RecommendationsBatch,
    RecommendedItem,
    Source,
    batch_request_model,
)
from serving_layer.schemas.snapshots import Activation, SnapshotList, SnapshotSummary
from serving_layer.schemas.users import Erasure

__all__ = [
    "Activation",
    "Erasure",
    "EventIn",
    "IngestResult",
    "Item",
    "ItemIn",
    "ItemsResult",
    "Liveness",
    "PopularItems",
    "Readiness",
    "Recommendations",
    "RecommendationsBatch",
    "RecommendedItem",
    "Rejection",
    "ScoredItem",
    "SimilarItems",
    "SnapshotList",
    "SnapshotSummary",
    "Source",
    "batch_request_model",
]
