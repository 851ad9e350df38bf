"""What ``Client`` and ``AsyncClient`` share: the attempt loop's decisions, the local fallback, the base options.

The network calls themselves live in :mod:`lambdarec.client.sync` and :mod:`lambdarec.client.aio`.
"""

from __future__ import annotations

from typing import Any

import httpx

import lambdarec.client.endpoints as calls
from lambdarec.client.endpoints import Call
from lambdarec.client.errors import ApiError, LambdarecError, Unavailable
from lambdarec.client.fallback import LastKnownPopular
from lambdarec.client.options import MANY_DEFAULTS, RECOMMEND_DEFAULTS, ClientConfig, ManyOptions, RecommendOptions
from lambdarec.client.retry import RETRY_STATUSES
from lambdarec.client.types import PopularItems, RecommendationsBatch
from lambdarec.logs import get_logger

log = get_logger(__name__)
CONTENT = {"Content-Type": "application/json"}


class Attempts:
    """The attempts of one call: after each, :meth:`settle` says whether it is over (the answer in ``value``),
    raises the final error, or leaves ``wait`` seconds to sleep before the next try."""

    def __init__(self, call: Call, config: ClientConfig):
        self.call = call
        self.policy = config.retry
        self.backoff = self.policy.backoff()
        self.made = 0
        self.value: Any = None
        self.wait = 0.0

    def settle(self, response: httpx.Response | None, error: httpx.TransportError | None) -> bool:
        self.made += 1
        if response is not None and response.status_code not in RETRY_STATUSES:
            self.value = calls.read(self.call, response)  # 2xx, or an ApiError for a 4xx: never retried
            return True
        failure: LambdarecError
        if response is not None:
            failure = calls.api_error(response)
            hint = failure.retry_after_s
        else:
            failure = Unavailable(
                f"{self.call.method} {self.call.path}: no answer after {self.made} attempt(s): "
                f"{type(error).__name__}: {error}",
                self.made,
            )
            hint = None
        if self.made >= self.policy.attempts:
            raise failure
        self.wait = self.policy.delay(self.backoff, hint)
        log.debug("client.retry", path=self.call.path, attempt=self.made, wait_s=round(self.wait, 3),
                  reason=str(failure))  # fmt: skip
        return False


def unreachable(error: LambdarecError) -> bool:
    """Whether ``error`` means the service could not answer (so a local fallback may serve)."""
    return isinstance(error, Unavailable) or (isinstance(error, ApiError) and error.status >= 500)


class ClientBase:
    """The configuration and the last-known-good popular list of one client."""

    def __init__(self, config: ClientConfig):
        self.config = config
        self.last_popular = LastKnownPopular(config.popular_refresh_s)

    def _recommend_call(self, user_id: str, options: RecommendOptions) -> Call:
        o = RECOMMEND_DEFAULTS | options
        filters = calls.Filters(tuple(o["categories"]), tuple(o["exclude_categories"]), o["filter"])
        return calls.recommend(user_id, o["k"], o["offset"], o["session_items"], o["exclude"], o["explain"],
                               o["impressions"], filters)  # fmt: skip

    def _many_call(self, options: ManyOptions) -> Call:
        o = MANY_DEFAULTS | options
        filters = calls.Filters(tuple(o["categories"]), tuple(o["exclude_categories"]), o["filter"])
        return calls.recommend_many(o["users"], o["items"], o["exclude"], o["k"], o["offset"], o["explain"],
                                    o["session_id"], o["impressions"], filters)  # fmt: skip

    def _local(self, call: Call, error: LambdarecError) -> Any:
        """The local fallback answer to a recommendations ``call`` the service could not answer; else re-raise."""
        if not (self.config.fallback and unreachable(error)) or call.name not in ("recommend", "recommend_many"):
            raise error
        if call.filtered:  # the popular list kept here knows no catalog: it could show what the filters forbid
            raise error
        body = call.body or {}
        k = int(call.params.get("k") or body.get("k") or self.config.default_k)
        offset = int(call.params.get("offset") or body.get("offset") or 0)
        exclude = [*call.params.get("exclude", "").split(","), *call.params.get("session_items", "").split(",")]
        if call.name == "recommend":
            found = self.last_popular.recommendations(call.user_id, k, offset, exclude)
            if found is None:
                raise error
            log.warning("client.local_fallback", path=call.path, reason=str(error))
            return found
        lists = [self.last_popular.recommendations(u, k, offset, [*body.get("exclude", []), *body.get("items", [])])
                 for u in (body.get("users") or [None])]  # fmt: skip
        if any(found is None for found in lists):
            raise error
        log.warning("client.local_fallback", path=call.path, reason=str(error))
        snapshot = lists[0].snapshot  # type: ignore[union-attr]
        return RecommendationsBatch(snapshot=snapshot, degraded=True, results=lists, local_fallback=True)  # type: ignore[arg-type]

    def _popular_due(self, call: Call) -> bool:
        return self.config.fallback and call.name != "popular" and self.last_popular.due()

    def _popular_call(self) -> Call:
        return calls.popular(self.config.popular_k, "recent")

    def _kept(self, call: Call, value: Any) -> Any:
        if isinstance(value, PopularItems) and call.params.get("window") == "recent":
            self.last_popular.keep(value)
        return value
