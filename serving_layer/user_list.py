"""The body of ``GET /v1/users/{user_id}/recommendations``: read the user's state, rank, encode the JSON with
msgspec (no pydantic model per item on the hot path), count the list in the metrics.

The bytes are those ``Recommendations.model_dump_json()`` gives (same fields, order and number formatting): a
list holding a number msgspec would spell differently (an exponent of 16 or more: pydantic writes ``1e+16``,
msgspec ``1e16``) is encoded by pydantic instead.

Example
-------
>>> body, degraded_reason = await user_list(service, RecommendQuery("u1", k=10))     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import msgspec

from lambdarec.model.rows import UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.merge import Ranked
from serving_layer.arms import arm_headers
from serving_layer.impressions import stamp
from serving_layer.recommend import CORRUPT_ROW, STORE_UNAVAILABLE, RecommendQuery, rank, shape
from serving_layer.service import Service

_encode = msgspec.json.Encoder().encode
SAME_SPELLING = 1e16  # below this magnitude msgspec and pydantic write every float alike


def fresh_age(state: UserState, now_s: float) -> float | None:
    """The body's ``fresh_state_age_s``: seconds since the newest event of the user's fresh state, or None."""
    return max(now_s - state.fresh.updated_at, 0.0) if state.fresh is not None else None


def encode_body(
    model: SnapshotModel, query: RecommendQuery, state: UserState, ranked: list[Ranked], now_s: float, degraded: bool
) -> bytes:
    """``shape(...).model_dump_json()`` as bytes, without building the pydantic models when the numbers allow."""
    age = fresh_age(state, now_s)
    items = [
        {
            "item_id": r.item_id,
            "score": r.score if math.isfinite(r.score) else 0.0,
            "source": r.source,
            "reason": r.reason,
            "components": r.components or None,
        }
        for r in ranked
    ]
    numbers = [abs(i["score"]) for i in items] + [abs(v) for r in ranked for v in r.components.values()]
    if (age is not None and age >= SAME_SPELLING) or any(x >= SAME_SPELLING for x in numbers if math.isfinite(x)):
        return shape(model, query, state, ranked, now_s, degraded).model_dump_json().encode()
    return _encode(
        {
            "user_id": query.user_id,
            "snapshot": model.version,
            "fresh_state_age_s": age,
            "degraded": degraded or state.corrupt is not None,
            "degraded_reason": STORE_UNAVAILABLE if degraded else CORRUPT_ROW if state.corrupt is not None else None,
            "k": query.k,
            "offset": query.offset,
            "items": items,
            "experiment": query.experiment,
            "arm": query.arm,
            "impression_id": query.impression_id,
        }
    )


async def user_list(service: Service, query: RecommendQuery) -> tuple[bytes, str | None, dict[str, str]]:
    """The JSON body of one user's list, its degraded reason (the ``X-Lambdarec-Degraded`` header) or None, and
    its experiment arm headers. A repeat with nothing changed comes from ``service.answers``
    (:mod:`serving_layer.answer_cache`): the user's state is read all the same, and compared.

    Raises the 503 ``HTTPException`` of :meth:`Service.served_model` while no snapshot is loaded.
    """
    served = await service.served_arm(query)
    model, query = served.model, served.query
    user_id = query.user_id or ""
    states, degraded = await service.user_states(model, [user_id])
    state = states[user_id]
    now = time.time()
    catalog = service.catalog.view_for(model, now)
    inputs = (model, served.weights, served.trending, catalog, served.plan)
    cacheable = not degraded and state.corrupt is None and not query.impressions
    kept = service.answers.get(query, inputs, state.fresh) if cacheable else None
    if kept is not None:
        service.metrics.observe_list(kept.sources, kept.fallback)
        service.metrics.observe_freshness(user_id, state.fresh, model.cutoff_s, now)
        return kept.body(fresh_age(state, now)), None, arm_headers(query)
    ranked_query, ranked_state = served.inputs(state)
    ranked, fallback = rank(
        model, ranked_query, ranked_state, weights=served.weights, trending=served.trending, now_s=now, catalog=catalog
    )
    if query.impressions:
        query = replace(query, impression_id=await stamp(service, query, model.version, [r.item_id for r in ranked]))
    body = encode_body(model, query, state, ranked, now, degraded)
    sources = [r.source for r in ranked]
    if cacheable:
        service.answers.put(query, inputs, state.fresh, model.version, body, fresh_age(state, now), sources, fallback)
    service.metrics.observe_list(sources, fallback)
    service.metrics.observe_freshness(user_id, state.fresh, model.cutoff_s, time.time())
    reason = STORE_UNAVAILABLE if degraded else CORRUPT_ROW if state.corrupt is not None else None
    return body, reason, arm_headers(query)
