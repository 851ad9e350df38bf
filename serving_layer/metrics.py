"""Prometheus metrics of one serving process, in a registry of its own (``GET /metrics``).

- ``lambdarec_serving_request_seconds{route,method}``: latency histogram per route template;
- ``lambdarec_serving_requests_total{route,method,status}``;
- ``lambdarec_serving_lists_total{kind}``: ranked lists served, ``personalised`` or ``fallback`` (the user had
  no batch row and no fresh vector: session neighbours, trending or popular); ``lambdarec_serving_fallback_share``
  is fallback / all since start;
- ``lambdarec_serving_items_total{source}``: the mix of sources in served lists;
- ``lambdarec_serving_degraded_total{reason}``: lists served from memory because the store was unavailable;
- ``lambdarec_serving_snapshot_age_seconds`` (since published) and ``..._snapshot_data_age_seconds`` (since its
  data cut-off, the batch job's ``as_of``); ``lambdarec_serving_snapshot_swaps_total``.

With several uvicorn workers each worker counts for itself; a scrape sees the worker that answered it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.defects import NONFINITE
from lambdarec.rank.merge import SOURCES

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """The collectors, with label children bound up front so the request path only increments."""

    def __init__(self, snapshot: Callable[[], tuple[SnapshotModel | None, float | None]]):
        """``snapshot()`` returns the served model and its publish time (epoch s), read at scrape time."""
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(NONFINITE)  # lambdarec_rank_nonfinite_total: NaN or inf met (and dropped) while ranking
        self.latency = Histogram(
            "lambdarec_serving_request_seconds",
            "Request latency by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "lambdarec_serving_requests_total",
            "Requests by route and status.",
            ["route", "method", "status"],
            registry=r,
        )
        lists = Counter("lambdarec_serving_lists_total", "Ranked lists served, by kind.", ["kind"], registry=r)
        self._personalised, self._fallback = lists.labels("personalised"), lists.labels("fallback")
        items = Counter(
            "lambdarec_serving_items_total", "Items served, by the source that pooled them.", ["source"], registry=r
        )
        self._items = {s: items.labels(s) for s in SOURCES}
        self.degraded = Counter(
            "lambdarec_serving_degraded_total", "Lists served from memory, by reason.", ["reason"], registry=r
        )
        self.swaps = Counter("lambdarec_serving_snapshot_swaps_total", "Snapshot models swapped in.", registry=r)
        self._counts = [0, 0]  # personalised, fallback: the share gauge reads these
        Gauge(
            "lambdarec_serving_fallback_share", "Share of lists served by fallback since start.", registry=r
        ).set_function(self._share)

        def published_age() -> float:
            _, published = snapshot()
            return time.time() - published if published else float("nan")

        def data_age() -> float:
            model, _ = snapshot()
            return time.time() - model.cutoff_s if model is not None and model.cutoff_s else float("nan")

        Gauge(
            "lambdarec_serving_snapshot_age_seconds", "Seconds since the served snapshot was published.", registry=r
        ).set_function(published_age)
        Gauge(
            "lambdarec_serving_snapshot_data_age_seconds",
            "Seconds since the served snapshot's data cut-off.",
            registry=r,
        ).set_function(data_age)
        self._route_children: dict[tuple[str, str], Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method)
        child = self._route_children.get(key)
        if child is None:
            child = self._route_children[key] = self.latency.labels(route, method)
        child.observe(seconds)
        self.requests.labels(route, method, str(status)).inc()

    def observe_list(self, sources: list[str], fallback: bool) -> None:
        """Count one served list: its kind and the source of each item."""
        (self._fallback if fallback else self._personalised).inc()
        self._counts[fallback] += 1
        for source in set(sources):
            self._items[source].inc(sources.count(source))

    def _share(self) -> float:
        total = self._counts[0] + self._counts[1]
        return self._counts[1] / total if total else 0.0
