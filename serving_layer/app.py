"""``create_app(settings)``: the FastAPI application of the serving layer.

Nothing connects at import time or in the factory: the lifespan opens the store and the event log, starts the
snapshot watcher (which loads the current model in the background and hot-swaps it when the pointer moves) and
the trending refresher, and closes everything on shutdown.

Example
-------
>>> app = create_app(Settings.load(overrides={"store": {"url": "sqlite:///var/store"}}))    # doctest: +SKIP
>>> uvicorn.run(app)                                                                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from lambdarec import __version__
from lambdarec.eventlog import EventLog
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore
from serving_layer import errors
from serving_layer.fast_path import FastPath
from serving_layer.middleware import BodyLimit, JsonBodiesOnly, RequestMetrics, UrlLimit
from serving_layer.routes import catalog, events, experiments, health, items, recommendations, snapshots, users
from serving_layer.service import Service

DESCRIPTION = """Recommendations merged from the nightly batch candidates and the speed layer's fresh state,
re-ranked with the session. Unknown users get a fallback list (session neighbours, trending, popular), never an
error. Lists served while the store is unavailable say `degraded: true` and carry the `X-Lambdarec-Degraded`
header. Writes (`/v1/events`) need an ingest key, snapshot administration an admin key, sent as
`Authorization: Bearer KEY` or `X-API-Key: KEY`. Every error body is a `Problem` naming the input at fault."""

TAGS = [
    {"name": "recommendations", "description": "Ranked lists for users and anonymous sessions."},
    {"name": "items", "description": "Similar and popular items, from the served snapshot in memory."},
    {"name": "events", "description": "Ingest interactions into the event log (ingest key)."},
    {"name": "catalog", "description": "Upsert items (ingest key) and read them: availability, categories..."},
    {"name": "snapshots", "description": "List snapshots and roll back without restart (admin key)."},
    {"name": "users", "description": "Erase a user from the lake, the fresh state and every response (admin key)."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics."},
    {"name": "experiments", "description": "Users' sticky arms in the A/B experiments (`[experiments.NAME]`)."},
]


class ServingApp(FastAPI):
    """FastAPI with the hot ``GET`` of a user's list answered before any of its layers: the server hands every
    request to :class:`~serving_layer.fast_path.FastPath` first, which passes what it does not answer to the
    FastAPI stack (:meth:`stack`: middleware, routing, validation, error handlers) unchanged."""

    fast_path: FastPath | None = None

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling of a request."""
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and scope["type"] == "http":
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, store: OnlineStore | None = None, log: EventLog | None = None
) -> ServingApp:
    """Build the app.

    Parameters
    ----------
    settings
        The whole settings tree (default ``Settings.load()``: ``$LAMBDAREC_CONFIG`` and ``LAMBDAREC_*``).
    store, log
        Already open backends to use instead of opening ``store.url``/``log.url`` (tests, benchmarks); the app
        leaves them open on shutdown.
    """
    settings = settings or Settings.load()
    s = settings.serving
    service = Service(settings, store=store, log_=log)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = ServingApp(
        title="lambdarec serving", version=__version__, description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan
    )
    app.state.service = service
    errors.install(app, {"k": (1, s.max_k, "serving.max_k"), "offset": (0, s.max_offset, "serving.max_offset")})
    for module in (recommendations, items, events, snapshots, users, health, experiments):
        app.include_router(module.router(s))
    app.include_router(catalog.router(settings))
    app.add_middleware(JsonBodiesOnly)
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes)
    app.add_middleware(UrlLimit, max_bytes=s.max_url_bytes)
    app.add_middleware(RequestMetrics, observe=service.metrics.observe_request)  # times the 413s too
    # before FastAPI's own layers: the hot GET (it checks the URL limit, times itself, answers its errors' 500)
    app.fast_path = FastPath(app.stack, service=service, settings=s)
    return app


def create_app_from_env() -> ServingApp:
    """``create_app(Settings.load())``: the factory ``lambdarec serve`` gives uvicorn (one call per worker)."""
    return create_app(Settings.load())
