"""``POST /v1/items`` (ingest key) and ``GET /v1/items/{item_id}``: the item catalog."""

import asyncio

import msgspec
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from lambdarec.catalog.ingest import ItemLimits, UpsertReport, upsert_items
from lambdarec.eventlog import AppendOutcomeUnknownError, EventLogError
from lambdarec.events import json_depth
from lambdarec.settings import Settings
from lambdarec.store import StoreError
from serving_layer.deps import IngestKey, ServiceDep, id_path
from serving_layer.errors import Problem, problem_responses
from serving_layer.schemas import Item, ItemIn, ItemsResult
from serving_layer.store_gate import StoreUnavailable

MAX_DEPTH = 3  # an array of items, an item, its categories or attributes (flat)
_json = msgspec.json.Decoder()

UNAVAILABLE = (
    "The event log or the store is unavailable; the message says which, and whether anything was written. An "
    "upsert is idempotent: sending the same items again is always safe."
)


def _invalid(msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body",), "msg": msg, "type": kind}])


def router(settings: Settings) -> APIRouter:
    s = settings.serving
    r = APIRouter(prefix="/v1", tags=["catalog"])
    limits = ItemLimits.from_settings(settings)
    body_schema = {
        "required": True,
        "description": f"One item object, or an array of at most {s.max_batch} (serving.max_batch).",
        "content": {"application/json": {"schema": {"anyOf": [
            ItemIn.model_json_schema(), {"type": "array", "items": ItemIn.model_json_schema(), "maxItems": s.max_batch}
        ]}, "example": [{"item_id": "i7", "available": False}, {"item_id": "i9", "categories": ["shoes"]}]}},
    }  # fmt: skip

    @r.post(
        "/items",
        response_model=ItemsResult,
        responses={**problem_responses(401, 403, 413, 415, 422), 503: {"model": Problem, "description": UNAVAILABLE}},
        openapi_extra={"requestBody": body_schema},
        summary="Upsert items into the catalog",
    )
    async def post_items(request: Request, service: ServiceDep, _key: IngestKey) -> ItemsResult:
        """Each item is validated on its own: the valid ones are upserted, the invalid ones reported with their
        position and reason. Each upsert is appended to the event log as an `item` event (so the master dataset
        keeps the catalog's history), then written to the store; serving applies it within
        `serving.catalog_poll_s`. Fields left out keep their stored values."""
        raw = await request.body()
        if (depth := json_depth(raw)) > MAX_DEPTH:
            raise _invalid(f"nested {depth} deep; items nest at most {MAX_DEPTH} deep (flat attributes)", "too_deep")
        try:
            data = _json.decode(raw)
        except msgspec.DecodeError as exc:
            raise _invalid(f"not JSON ({exc}); send one item object or an array of them", "json_invalid") from None
        objects = [data] if isinstance(data, dict) else data
        if not isinstance(objects, list):
            raise _invalid(f"must be an item object or an array of them, not JSON {type(data).__name__}", "model_type")
        if len(objects) > s.max_batch:
            raise _invalid(f"{len(objects)} items is more than serving.max_batch ({s.max_batch}); split it", "too_long")
        report = UpsertReport()
        try:
            store = service.store()
            await asyncio.to_thread(upsert_items, store, service.event_log(), objects, limits, report=report)
        except AppendOutcomeUnknownError as exc:
            raise HTTPException(
                503,
                f"the store was not written and the event log did not confirm the changes, so it may or may not hold "
                f"them ({exc}); resend the same items (an upsert is idempotent)",
                {"Retry-After": "1"},
            ) from exc
        except (EventLogError, StoreUnavailable) as exc:
            raise HTTPException(503, f"nothing was written: {exc}; resend the items", {"Retry-After": "1"}) from exc
        except StoreError as exc:  # the log has the changes, the store did not take them
            raise HTTPException(
                503,
                f"the changes are in the event log but the store did not take them ({exc}); resend the same items "
                "(an upsert is idempotent)",
                {"Retry-After": "1"},
            ) from exc
        return ItemsResult.model_validate(report.to_json())

    @r.get(
        "/items/{item_id}",
        response_model=Item,
        responses=problem_responses(404, 422, 503),
        summary="One item of the catalog",
    )
    async def get_item(item_id: id_path(s, "item"), service: ServiceDep) -> Item:  # type: ignore[valid-type]
        """The item as the catalog holds it (read from the store, so an upsert shows at once). 404 when the
        catalog does not list it."""
        try:
            found = await service.gate.call(service.store().read_catalog, [item_id])
        except StoreUnavailable as exc:
            raise HTTPException(503, f"the store is unavailable: {exc}", {"Retry-After": "1"}) from exc
        if item_id not in found:
            raise HTTPException(404, f"item {item_id!r} is not in the catalog; POST /v1/items lists it")
        return Item.model_validate(found[item_id].to_json())

    return r
