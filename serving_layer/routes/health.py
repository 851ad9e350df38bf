"""``/livez`` (the process answers), ``/readyz`` (a snapshot is loaded and the store answers), ``/metrics``."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lambdarec.settings import ServingSettings
from serving_layer.deps import ServiceDep
from serving_layer.schemas import Liveness, Readiness


def router(_s: ServingSettings) -> APIRouter:
    r = APIRouter(tags=["health"])

    @r.get("/livez", response_model=Liveness, summary="Liveness")
    async def livez() -> Liveness:
        """Always 200 while the process serves requests; touches nothing."""
        return Liveness()

    @r.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready."}},
        summary="Readiness",
    )
    async def readyz(service: ServiceDep) -> Response:
        """200 once a snapshot is loaded and the store answers a ping; 503 with the reasons otherwise."""
        reasons = await service.readiness()
        model = service.models.model
        body = Readiness(ready=not reasons, snapshot=model.version if model is not None else None, reasons=reasons)
        return JSONResponse(body.model_dump(), status_code=503 if reasons else 200)

    @r.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics",
        responses={
            200: {
                "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                "description": "Prometheus text exposition format.",
            }
        },
    )
    async def metrics(service: ServiceDep) -> Response:
        """Latency per route, lists by kind (fallback share), item sources, degraded lists, snapshot age."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return r
