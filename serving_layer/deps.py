"""Shared route dependencies as ``Annotated`` aliases: the service, the served model, API-key roles, and the
query parameters whose bounds come from settings.

Example
-------
>>> @router.get("/v1/popular")                                              # doctest: +SKIP
... async def popular(model: ModelDep, k: KQuery = 10) -> PopularItems: ...
"""

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator
from starlette.exceptions import HTTPException

from lambdarec.events import ID_PATTERN
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import ServingSettings
from serving_layer.auth import Role
from serving_layer.service import Service


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_model(service: ServiceDep) -> SnapshotModel:
    """The served snapshot, taken once per request; 503 until one is loaded."""
    return service.served_model()


ModelDep = Annotated[SnapshotModel, Depends(get_model)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`")


def _require(role: Role):  # type: ignore[no-untyped-def]
    async def check(
        service: ServiceDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> None:
        key = bearer.credentials if bearer is not None else api_key
        if not key:
            raise HTTPException(
                401,
                f"this endpoint needs an API key with the {role} role: send "
                "'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                {"WWW-Authenticate": "Bearer"},
            )
        roles = service.keys.roles(key)
        if not roles:
            raise HTTPException(
                401,
                "unknown API key; `lambdarec serve hash-key KEY` prints the digest to add to "
                f"serving.{role}_key_hashes",
                {"WWW-Authenticate": "Bearer"},
            )
        if role not in roles:
            raise HTTPException(403, f"this API key lacks the {role} role (serving.{role}_key_hashes)")

    return check


IngestKey = Annotated[None, Depends(_require("ingest"))]
AdminKey = Annotated[None, Depends(_require("admin"))]


# ---- parameters whose bounds are settings: built once per app so the OpenAPI document states them ----------


def k_query(s: ServingSettings) -> Any:
    return Annotated[
        int,
        Query(ge=1, le=s.max_k, description=f"Items to return, 1..{s.max_k} (serving.max_k).", examples=[s.default_k]),
    ]


def offset_query(s: ServingSettings) -> Any:
    return Annotated[
        int,
        Query(
            ge=0,
            le=s.max_offset,
            description=f"Ranked items to skip, 0..{s.max_offset} (serving.max_offset), for paging.",
        ),
    ]


def id_path(s: ServingSettings, what: str) -> Any:
    return Annotated[
        str,
        Path(
            min_length=1,
            max_length=s.max_id_chars,
            pattern=ID_PATTERN,
            description=f"The {what}'s id: not blank, no control characters, no leading or trailing whitespace.",
            examples=["u1" if what == "user" else "i1"],
        ),
    ]


def parse_item_list(raw: str | None, s: ServingSettings) -> tuple[str, ...] | None:
    """``a,b,c`` as a tuple of distinct, stripped, non-empty ids (None when absent); ValueError past the bounds."""
    if raw is None:
        return None
    items = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    too_long = next((i for i in items if len(i) > s.max_id_chars), None)
    if too_long is not None:
        raise ValueError(
            f"an item id of {len(too_long)} characters is longer than serving.max_id_chars ({s.max_id_chars})"
        )
    if len(items) > s.max_request_items:
        raise ValueError(f"{len(items)} items is more than serving.max_request_items ({s.max_request_items})")
    return items


def item_list_query(s: ServingSettings, name: str, what: str) -> Any:
    """A comma-separated item list (``a,b,c``), parsed by its validator into a tuple (None when absent).

    A validator, not a dependency: FastAPI solves dependencies on every request, and this is the hot path.
    """

    def parse(raw: str | None) -> tuple[str, ...] | None:
        return parse_item_list(raw, s)

    doc = f"{what} Comma-separated item ids, at most {s.max_request_items} (serving.max_request_items)."
    return Annotated[str | None, Query(alias=name, description=doc, examples=["i3,i9"]), AfterValidator(parse)]
