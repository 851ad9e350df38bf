"""``GET /v1/items/{item_id}/similar`` and ``GET /v1/popular``: answered from the served model and the catalog
in memory."""

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException

from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import ServingSettings
from serving_layer.catalog_params import FilterParams, request_filters
from serving_layer.deps import ModelDep, ServiceDep, id_path, k_query
from serving_layer.errors import problem_responses
from serving_layer.schemas import PopularItems, ScoredItem, SimilarItems

WindowQuery = Annotated[
    Literal["recent", "all"],
    Query(
        description="`recent`: the last `batch.popularity_recent_days` before the snapshot's cut-off; "
        "`all`: its whole window."
    ),
]


def similar_items(
    model: SnapshotModel, item: int, k: int, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items most similar to ``item``: its precomputed neighbours, or exact cosine when more are asked
    (or when the catalog's rules leave fewer than ``k`` of them: ``eligible``, a mask over the items)."""
    row = model.neighbours[item]
    valid = row >= 0
    if eligible is not None:
        valid &= eligible[np.maximum(row, 0)]
    if int(valid.sum()) >= k:
        return row[valid][:k], model.neighbour_scores[item][valid][:k]
    unit = model.unit_factors
    sims = unit @ unit[item]
    sims[item] = -np.inf
    if eligible is not None:
        sims[~eligible] = -np.inf
    k = min(k, len(sims) - 1, int(np.isfinite(sims).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.lexsort((top, -sims[top]))]
    return top, sims[top]


def router(s: ServingSettings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["items"])
    k_param, item_id_param = k_query(s), id_path(s, "item")
    rules = FilterParams(s)

    @r.get(
        "/items/{item_id}/similar",
        response_model=SimilarItems,
        responses=problem_responses(404, 422, 503),
        summary="Items similar to one item",
    )
    async def similar(
        item_id: item_id_param,
        model: ModelDep,
        service: ServiceDep,
        k: k_param = s.default_k,
        categories: rules.categories = None,
        exclude_categories: rules.exclude = None,
        filter_: rules.filter = None,
    ) -> SimilarItems:
        """Most similar first, by cosine similarity of the snapshot's item factors, among the items the catalog's
        rules and the request's filters allow. 404 for an unknown item."""
        index = model.item_index.get(item_id)
        if index is None:
            raise HTTPException(
                404,
                f"item {item_id!r} is not in snapshot {model.version} ({len(model.item_ids)} "
                "items); check the id, or wait for a snapshot whose data includes it",
            )
        view = service.catalog.view_for(model, time.time())
        eligible = view.mask(request_filters(categories, exclude_categories, filter_))
        items, scores = similar_items(model, index, k, eligible)
        ids = model.item_ids
        out = [
            ScoredItem(item_id=str(ids[i]), score=float(sc))
            for i, sc in zip(items.tolist(), scores.tolist(), strict=True)
        ]
        return SimilarItems(item_id=item_id, snapshot=model.version, items=out)

    @r.get(
        "/popular", response_model=PopularItems, responses=problem_responses(422, 503), summary="The most popular items"
    )
    async def popular(
        model: ModelDep,
        service: ServiceDep,
        k: k_param = s.default_k,
        window: WindowQuery = "recent",
        categories: rules.categories = None,
        exclude_categories: rules.exclude = None,
        filter_: rules.filter = None,
    ) -> PopularItems:
        """Most popular first, by weighted interactions in the snapshot's window, among the items the catalog's
        rules and the request's filters allow; items with no interactions are left out."""
        order, counts = (
            (model.recent_order, model.popularity_recent)
            if window == "recent"
            else (model.popular_order, model.popularity_all)
        )
        view = service.catalog.view_for(model, time.time())
        eligible = view.mask(request_filters(categories, exclude_categories, filter_))
        top = (order if eligible is None else order[eligible[order]])[:k]
        top = top[counts[top] > 0]
        ids = model.item_ids
        out = [ScoredItem(item_id=str(ids[i]), score=float(counts[i])) for i in top.tolist()]
        return PopularItems(snapshot=model.version, window=window, items=out)

    return r
