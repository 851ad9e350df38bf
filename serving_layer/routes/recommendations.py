"""``GET /v1/users/{user_id}/recommendations`` and ``POST /v1/recommendations``."""

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from lambdarec.model.rows import NO_STATE, UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import ServingSettings
from serving_layer.arms import ARM_HEADER, EXPERIMENT_HEADER, Served, arm_headers
from serving_layer.catalog_params import FilterParams, parse_filter_param, request_filters
from serving_layer.deps import ModelDep, ServiceDep, id_path, item_list_query, k_query, offset_query
from serving_layer.errors import problem_responses
from serving_layer.impressions import stamp
from serving_layer.recommend import CORRUPT_ROW, DEGRADED_HEADER, STORE_UNAVAILABLE, RecommendQuery, rank, shape
from serving_layer.schemas import Recommendations, RecommendationsBatch, batch_request_model
from serving_layer.service import Service
from serving_layer.user_list import user_list

INLINE_LISTS = 4  # more lists than this are ranked in a worker thread, so one big batch never stalls the loop

ExplainQuery = Annotated[bool, Query(description="Add a reason (and the score parts) to every item.")]
ImpressionsQuery = Annotated[
    bool,
    Query(
        description="Write an `impression` event for the items returned (attributed to the list's experiment "
        "arm); the body's `impression_id` names it."
    ),
]


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
        impressions: ImpressionsQuery = False,
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
        query = RecommendQuery(
            user_id, k, offset, session_items or (), frozenset(exclude or ()), explain, impressions=impressions,
            filters=filters,
        )  # fmt: skip
        body, degraded_reason, arm = await user_list(service, query)
        headers = {DEGRADED_HEADER: degraded_reason} | arm if degraded_reason else arm
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
        anonymous list seeded by `items` (session neighbours, then trending, then popular). Each list says the
        experiment arm it was served under (an anonymous one is assigned by `session_id`); with one list, so do
        the `X-Lambdarec-Experiment` and `X-Lambdarec-Arm` headers."""
        k = body.k or s.default_k
        exclude = frozenset(body.exclude)
        filters = request_filters(
            frozenset(body.categories), frozenset(body.exclude_categories), parse_filter_param(body.filter, s)
        )
        queries = [
            RecommendQuery(
                u,
                k,
                body.offset,
                tuple(body.items),
                exclude,
                body.explain,
                body.session_id,
                body.impressions,
                filters=filters,
            )
            for u in (body.users or [None])
        ]
        served = [await service.served_arm(q, model) for q in queries]
        states, degraded = await _read_states(service, served)
        args = (service, served, states, degraded)
        ranked = await asyncio.to_thread(_rank_all, *args) if len(queries) > INLINE_LISTS else _rank_all(*args)
        if body.impressions:
            ranked = await _stamp_all(service, served, ranked)
        now = time.time()
        for one, (result, fallback) in zip(served, ranked, strict=True):
            service.metrics.observe_list([item.source for item in result.items], fallback)
            state = states.get((one.model.version, one.query.user_id))
            fresh = state.fresh if state is not None else None
            service.metrics.observe_freshness(one.query.user_id, fresh, one.model.cutoff_s, now)
        if degraded:
            response.headers[DEGRADED_HEADER] = STORE_UNAVAILABLE
        if len(served) == 1:
            response.headers.update(arm_headers(served[0].query))
        return RecommendationsBatch(snapshot=model.version, degraded=degraded, results=[b for b, _ in ranked])

    return r


async def _read_states(service: Service, served: list[Served]) -> tuple[dict[tuple[str, str], UserState], bool]:
    """Each user's state in the snapshot their arm serves (one read per snapshot), keyed by (version, user)."""
    by_model: dict[str, tuple[SnapshotModel, list[str]]] = {}
    for one in served:
        if one.query.user_id is not None:
            by_model.setdefault(one.model.version, (one.model, []))[1].append(one.query.user_id)
    states: dict[tuple[str, str], UserState] = {}
    degraded = False
    for version, (model, users) in by_model.items():
        found, from_memory = await service.user_states(model, users)
        states.update(((version, u), state) for u, state in found.items())
        degraded = degraded or from_memory
    return states, degraded


async def _stamp_all(
    service: Service, served: list[Served], ranked: list[tuple[Recommendations, bool]]
) -> list[tuple[Recommendations, bool]]:
    """Each list with the impression event written for it (``impression_id``)."""
    out = []
    for one, (result, fallback) in zip(served, ranked, strict=True):
        ids = [item.item_id for item in result.items]
        impression_id = await stamp(service, one.query, result.snapshot, ids)
        out.append((result.model_copy(update={"impression_id": impression_id}), fallback))
    return out


def _rank_all(
    service: Service, served: list[Served], states: dict[tuple[str, str], UserState], degraded: bool
) -> list[tuple[Recommendations, bool]]:
    now = time.time()
    out = []
    for one in served:
        query, state = one.query, NO_STATE
        if query.user_id:
            state = states.get((one.model.version, query.user_id), NO_STATE)
        ranked_query, ranked_state = one.inputs(state)
        catalog = service.catalog.view_for(one.model, now)
        ranked, fallback = rank(
            one.model, ranked_query, ranked_state, weights=one.weights, trending=one.trending, now_s=now,
            catalog=catalog,
        )  # fmt: skip
        out.append((shape(one.model, query, state, ranked, now, degraded), fallback))
    return out


_DEGRADED_DOC = {
    DEGRADED_HEADER: {
        "description": "Present when the list was served degraded: `store-unavailable` when the store could not "
        "be read in time (from memory), `corrupt-row` when the user's stored row failed its checks (fallbacks).",
        "schema": {"type": "string", "enum": [STORE_UNAVAILABLE, CORRUPT_ROW]},
    },
    EXPERIMENT_HEADER: {
        "description": "The experiment the list was served under; absent outside experiments.",
        "schema": {"type": "string"},
    },
    ARM_HEADER: {"description": "The experiment's arm the list was served under.", "schema": {"type": "string"}},
}
