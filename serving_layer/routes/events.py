"""``POST /v1/events``: validate events and append the valid ones to the event log (ingest key required)."""

import asyncio

import msgspec
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from lambdarec.events import json_depth
from lambdarec.log import EventLogError, send_events
from lambdarec.settings import ServingSettings
from serving_layer.deps import IngestKey, ServiceDep
from serving_layer.errors import problem_responses
from serving_layer.schemas import EventIn, IngestResult

_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


def _body_schema(s: ServingSettings) -> dict[str, object]:
    event = EventIn.model_json_schema(by_alias=True)
    return {
        "required": True,
        "description": f"One event object, or an array of at most {s.max_batch} (serving.max_batch).",
        "content": {
            "application/json": {
                "schema": {"anyOf": [event, {"type": "array", "items": event, "maxItems": s.max_batch}]},
                "examples": {
                    "one": {
                        "value": {
                            "event_id": "e-1",
                            "user_id": "u42",
                            "item_id": "i7",
                            "event_type": "click",
                            "timestamp": "2026-11-29T10:15:00Z",
                        }
                    }
                },
            }
        },
    }


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["events"])

    @r.post(
        "/events",
        status_code=202,
        response_model=IngestResult,
        responses=problem_responses(401, 403, 413, 415, 422, 503),
        openapi_extra={"requestBody": _body_schema(s)},
        summary="Append events to the event log",
    )
    async def post_events(request: Request, service: ServiceDep, _key: IngestKey) -> IngestResult:
        """Each event is validated on its own: the valid ones are appended (keyed by `user_id`), the invalid ones
        are counted and reported with their position and reason. The speed layer picks the events up from the log.
        """
        raw = await request.body()
        limit = service.rules.bounds.max_json_depth + 1  # the array around a batch of events
        if (depth := json_depth(raw)) > limit:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body",),
                        "msg": f"nested {depth} deep; an event may nest at most "
                        f"{limit - 1} deep (events.max_json_depth), inside at most one array",
                        "type": "too_deep",
                    }
                ]
            )
        try:
            data = _json.decode(raw)
        except msgspec.DecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body",),
                        "msg": f"not JSON ({exc}); send one event object or an array of them",
                        "type": "json_invalid",
                    }
                ]
            ) from None
        if isinstance(data, dict):
            events = [raw]
        elif isinstance(data, list):
            if len(data) > s.max_batch:
                raise RequestValidationError(
                    [
                        {
                            "loc": ("body",),
                            "msg": f"{len(data)} events is more than "
                            f"serving.max_batch ({s.max_batch}); split them into several "
                            "requests",
                            "type": "too_long",
                        }
                    ]
                )
            events = [_encode(e) for e in data]
        else:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body",),
                        "msg": f"must be one event object or an array of them, not a JSON {type(data).__name__}",
                        "type": "model_type",
                    }
                ]
            )

        def append() -> IngestResult:
            result = send_events(service.event_log(), events, service.rules)
            return IngestResult.model_validate(result.to_json())

        try:
            return await asyncio.to_thread(append)
        except EventLogError as exc:
            raise HTTPException(503, f"the event log is unavailable, nothing was appended: {exc}") from exc

    return r
