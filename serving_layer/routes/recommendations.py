"""``GET /v1/users/{user_id}/recommendations`` and ``POST /v1/recommendations``."""

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from lambdarec.model.rows import NO_STATE, UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import ServingSettings
from serving_layer.catalog_params import FilterParams, parse_filter_param, request_filters
from serving_layer.deps import ModelDep, ServiceDep, id_path, item_list_query, k_query, offset_query
from serving_layer.errors import problem_responses
from serving_layer.recommend import CORRUPT_ROW, DEGRADED_HEADER, STORE_UNAVAILABLE, RecommendQuery, recommend
from serving_layer.schemas import Recommendations, RecommendationsBatch, batch_request_model
from serving_layer.service import Service
from serving_layer.user_list import user_list

INLINE_LISTS = 4  # more lists than this are ranked in a worker thread, so one big batch never stalls the loop

ExplainQuery = Annotated[bool, Query(description="Add a reason (and the score parts) to every item.")]


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["recommendations"])
    k_param, offset_param, user_id_param = k_query(s), offset_query(s), id_path(s, "user")
    session_param = item_list_query(
        s,
        "session_items",
        "The current session's items, oldest first: the list "
        "is re-ranked towards them and they are not recommended back.",
    )
    exclude_param = item_list_query(s, "exclude", "Items never to recommend.")
    batch_body = batch_request_model(s)
    rules = FilterParams(s)

    @r.get(
        "/users/{user_id}/recommendations",
        response_model=Recommendations,
        responses={**problem_responses(422, 503), 200: {"headers": _DEGRADED_DOC}},
        summary="Recommendations for one user",
    )
    async def user_recommendations(
        request: Request,
        user_id: user_id_param,
        k: k_param = s.default_k,
        offset: offset_param = 0,
        session_items: session_param = None,
        exclude: exclude_param = None,
        explain: ExplainQuery = False,
        categories: rules.categories = None,
        exclude_categories: rules.exclude = None,
        filter_: rules.filter = None,
    ) -> Response:
        """The user's batch candidates and fresh speed-layer state merged and re-ranked with the session, among
        the items the catalog's rules and the request's filters allow (the list deepens past the others).

        An unknown user gets a fallback list (session neighbours, then trending, then popular), never an error.
        When the store is unavailable the list comes from memory; when the user's stored row is corrupt it comes
        from the fallbacks: either way `degraded` is true and `degraded_reason` and the `X-Lambdarec-Degraded`
        header say why.
        """
        # The hot path: no Depends (FastAPI solves each dependency anew per request, ~40 us apiece) and the body
        # encoded by msgspec; serving_layer.fast_path answers the usual requests before FastAPI parses them.
        service: Service = request.app.state.service
        filters = request_filters(categories, exclude_categories, filter_)
        query = RecommendQuery(user_id, k, offset, session_items or (), frozenset(exclude or ()), explain, filters)
        body, degraded_reason = await user_list(service, query)
        headers = {DEGRADED_HEADER: degraded_reason} if degraded_reason else None
        return Response(body, media_type="application/json", headers=headers)

    @r.post(
        "/recommendations",
        response_model=RecommendationsBatch,
        responses={**problem_responses(413, 415, 422, 503), 200: {"headers": _DEGRADED_DOC}},
        summary="Recommendations for many users, or for an anonymous session or basket",
    )
    async def many_recommendations(
        body: batch_body,  # type: ignore[valid-type]
        service: ServiceDep,
        model: ModelDep,
        response: Response,
    ) -> RecommendationsBatch:
        """One list per user in `users` (in that order), each re-ranked towards `items`; with no `users`, one
        anonymous list seeded by `items` (session neighbours, then trending, then popular)."""
        states, degraded = await service.user_states(model, body.users) if body.users else ({}, False)
        k = body.k or s.default_k
        exclude = frozenset(body.exclude)
        filters = request_filters(
            frozenset(body.categories), frozenset(body.exclude_categories), parse_filter_param(body.filter, s)
        )
        queries = [
            RecommendQuery(u, k, body.offset, tuple(body.items), exclude, body.explain, filters)
            for u in (body.users or [None])
        ]
        args = (service, model, queries, states, degraded)
        ranked = await asyncio.to_thread(_rank_all, *args) if len(queries) > INLINE_LISTS else _rank_all(*args)
        now = time.time()
        for query, (result, fallback) in zip(queries, ranked, strict=True):
            service.metrics.observe_list([item.source for item in result.items], fallback)
            fresh = states[query.user_id].fresh if query.user_id in states else None
            service.metrics.observe_freshness(query.user_id, fresh, model.cutoff_s, now)
        if degraded:
            response.headers[DEGRADED_HEADER] = STORE_UNAVAILABLE
        return RecommendationsBatch(snapshot=model.version, degraded=degraded, results=[b for b, _ in ranked])

    return r


def _rank_all(
    service: Service, model: SnapshotModel, queries: list[RecommendQuery], states: dict[str, UserState], degraded: bool
) -> list[tuple[Recommendations, bool]]:
    trending, now = service.trending.scores_for(model), time.time()
    catalog = service.catalog.view_for(model, now)
    return [
        recommend(
            model,
            q,
            states.get(q.user_id, NO_STATE) if q.user_id else NO_STATE,
            weights=service.weights,
            trending=trending,
            now_s=now,
            degraded=degraded,
            catalog=catalog,
        )
        for q in queries
    ]


_DEGRADED_DOC = {
    DEGRADED_HEADER: {
        "description": "Present when the list was served degraded: `store-unavailable` when the store could not "
        "be read in time (from memory), `corrupt-row` when the user's stored row failed its checks (fallbacks).",
        "schema": {"type": "string", "enum": [STORE_UNAVAILABLE, CORRUPT_ROW]},
    }
}
