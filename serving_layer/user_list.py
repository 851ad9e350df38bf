"""The body of ``GET /v1/users/{user_id}/recommendations``: read the user's state, rank, encode the JSON with
msgspec (no pydantic model per item on the hot path), count the list in the metrics.

The bytes are those ``Recommendations.model_dump_json()`` gives (same fields, order and number formatting): a
list holding a number msgspec would spell differently (an exponent of 16 or more: pydantic writes ``1e+16``,
msgspec ``1e16``) is encoded by pydantic instead.

Example
-------
>>> body, degraded_reason, arm = await user_list(service, RecommendQuery("u1", k=10))     # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import msgspec

from lambdarec.model.rows import UserState
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.merge import Ranked
from serving_layer.arms import Served, arm_headers
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


Answer = tuple[bytes, str | None, dict[str, str]]  # the body, the degraded reason (or None), the arm's headers


async def user_list(service: Service, query: RecommendQuery) -> Answer:
    """The JSON body of one user's list, its degraded reason (the ``X-Lambdarec-Degraded`` header) or None, and
    its experiment arm headers. A repeat with nothing changed comes from ``service.answers``
    (:mod:`serving_layer.answer_cache`): the user's state is read all the same (or taken from
    :mod:`serving_layer.kept_states` while the store lists no change to it), and compared. Where the store is
    read inline (SQLite), the lists of one event-loop turn are read and ranked together
    (:mod:`serving_layer.turn_lists`).

    Raises the 503 ``HTTPException`` of :meth:`Service.served_model` while no snapshot is loaded.
    """
    served = await service.served_arm(query)
    if service.inline_reads and not served.query.impressions:
        return await service.turn_lists.answer(served)
    user_id = served.query.user_id or ""
    states, degraded = await service.user_states(served.model, [user_id])
    if not served.query.impressions:
        return answer_now(service, served, states[user_id], degraded)
    return await _with_impression(service, served, states[user_id], degraded)


def answer_now(service: Service, served: Served, state: UserState, degraded: bool) -> Answer:
    """The answer of a request that writes no impression, from the user's ``state``: kept, or ranked now."""
    model, query = served.model, served.query
    now = time.time()
    inputs = _inputs(service, served, now)
    cacheable = not degraded and state.corrupt is None
    kept = service.answers.get(query, inputs, state.fresh) if cacheable else None
    if kept is not None:
        service.metrics.observe_list(kept.sources, kept.fallback)
        service.metrics.observe_freshness(query.user_id, state.fresh, model.cutoff_s, now)
        return kept.body(fresh_age(state, now)), None, arm_headers(query)
    ranked, fallback = _ranked(served, state, now, inputs)
    return _answer(service, served, query, state, degraded, now, inputs, ranked, fallback)


async def _with_impression(service: Service, served: Served, state: UserState, degraded: bool) -> Answer:
    """The answer of a request that writes an impression event for its items (never kept: its id is its own)."""
    now = time.time()
    inputs = _inputs(service, served, now)
    ranked, fallback = _ranked(served, state, now, inputs)
    item_ids = [r.item_id for r in ranked]
    query = replace(served.query, impression_id=await stamp(service, served.query, served.model.version, item_ids))
    return _answer(service, served, query, state, degraded, now, inputs, ranked, fallback)


def _inputs(service: Service, served: Served, now: float) -> tuple[object, ...]:
    """What a kept answer must have been ranked with (:mod:`serving_layer.answer_cache`), compared by identity."""
    catalog = service.catalog.view_for(served.model, now)
    return served.model, served.weights, served.trending, catalog, served.plan


def _ranked(served: Served, state: UserState, now: float, inputs: tuple[object, ...]) -> tuple[list[Ranked], bool]:
    ranked_query, ranked_state = served.inputs(state)
    return rank(served.model, ranked_query, ranked_state, weights=served.weights, trending=served.trending,
                now_s=now, catalog=inputs[3])  # type: ignore[arg-type]  # fmt: skip


def _answer(
    service: Service, served: Served, query: RecommendQuery, state: UserState, degraded: bool, now: float,
    inputs: tuple[object, ...], ranked: list[Ranked], fallback: bool,
) -> Answer:  # fmt: skip
    """A ranked list encoded, kept (when it may be), counted."""
    model = served.model
    body = encode_body(model, query, state, ranked, now, degraded)
    sources = [r.source for r in ranked]
    if not degraded and state.corrupt is None and not query.impressions:
        service.answers.put(query, inputs, state.fresh, model.version, body, fresh_age(state, now), sources, fallback)
    service.metrics.observe_list(sources, fallback)
    service.metrics.observe_freshness(query.user_id, state.fresh, model.cutoff_s, time.time())
    reason = STORE_UNAVAILABLE if degraded else CORRUPT_ROW if state.corrupt is not None else None
    return body, reason, arm_headers(query)
