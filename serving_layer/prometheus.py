"""Prometheus metrics of one serving process, in a registry of its own (``GET /metrics``).

- ``lambdarec_serving_request_seconds{route,method}``: latency histogram per route template;
- ``lambdarec_serving_requests_total{route,method,status}``;
- ``lambdarec_serving_lists_total{kind}``: ranked lists served, ``personalised`` or ``fallback`` (the user had
  no batch row and no fresh vector: session neighbours, trending or popular); ``lambdarec_serving_fallback_share``
  is fallback / all since start;
- ``lambdarec_serving_items_total{source}``: the mix of sources in served lists;
- ``lambdarec_serving_degraded_total{reason}``: lists served degraded: ``store-unavailable`` (from memory, the
  store could not be read) or ``corrupt-row`` (the user's stored row failed its checks: fallbacks only);
- ``lambdarec_serving_corrupt_rows_total{kind}``: stored ``user`` rows (per read) and ``item`` rows (per model
  load) that failed their checksum or named unknown items, and were left out;
- ``lambdarec_serving_errors_total{exception}``: requests that failed with a bug (HTTP 500), by exception type;
- ``lambdarec_serving_merge_kernel``: 1 while lists are ranked by the compiled merge kernel, 0 while by the
  numpy steps (loading at start, switched off, or failed to load: :mod:`lambdarec.rank.kernel`);
- ``lambdarec_serving_snapshot_age_seconds`` (since published) and ``..._snapshot_data_age_seconds`` (since its
  data cut-off, the batch job's ``as_of``); ``lambdarec_serving_snapshot_swaps_total``;
- ``lambdarec_event_to_served_seconds{serve}``: per list that used fresh state, now minus the log append time of
  the newest event in it; ``lambdarec_served_snapshot_age_seconds``: per list, the served snapshot's data age.

With several uvicorn workers each worker counts for itself; a scrape sees the worker that answered it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from lambdarec.model.rows import FreshUser
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.defects import NONFINITE
from lambdarec.rank.kernel import loaded as kernel_loaded
from lambdarec.rank.merge import SOURCES
from lambdarec.store.decoded import DecodedStates

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
SNAPSHOT_AGE_BUCKETS = (600.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0, 1.5 * 86400.0,
                        2 * 86400.0, 3 * 86400.0, 7 * 86400.0)  # fmt: skip
SERVED_USERS = 100_000  # users whose newest served event time is remembered, to tell a first serve from a repeat


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
            "lambdarec_serving_degraded_total", "Lists served degraded, by reason.", ["reason"], registry=r
        )
        self.corrupt_rows = Counter(
            "lambdarec_serving_corrupt_rows_total",
            "Stored rows that failed their checksum or named unknown items and were left out, by kind.",
            ["kind"],
            registry=r,
        )
        self.errors = Counter(
            "lambdarec_serving_errors_total", "Requests failed by a bug (HTTP 500), by exception type.",
            ["exception"], registry=r,
        )  # fmt: skip
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
            "lambdarec_serving_merge_kernel",
            "1 while lists are ranked by the compiled merge kernel, 0 while by its numpy steps.",
            registry=r,
        ).set_function(lambda: float(kernel_loaded()))
        Gauge(
            "lambdarec_serving_snapshot_age_seconds", "Seconds since the served snapshot was published.", registry=r
        ).set_function(published_age)
        Gauge(
            "lambdarec_serving_snapshot_data_age_seconds",
            "Seconds since the served snapshot's data cut-off.",
            registry=r,
        ).set_function(data_age)
        self._route_children: dict[tuple[str, str], Histogram] = {}
        self._status_children: dict[tuple[str, str, int], Counter] = {}
        self._init_freshness(r)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method)
        child = self._route_children.get(key)
        if child is None:
            child = self._route_children[key] = self.latency.labels(route, method)
        child.observe(seconds)
        counted = self._status_children.get((route, method, status))
        if counted is None:  # bound once per route, method and status: labels() costs more than inc()
            counted = self._status_children[route, method, status] = self.requests.labels(route, method, str(status))
        counted.inc()

    def observe_list(self, sources: list[str], fallback: bool) -> None:
        """Count one served list: its kind and the source of each item."""
        (self._fallback if fallback else self._personalised).inc()
        self._counts[fallback] += 1
        for source in set(sources):
            self._items[source].inc(sources.count(source))

    def _init_freshness(self, r: CollectorRegistry) -> None:
        event_to_served = Histogram(
            "lambdarec_event_to_served_seconds",
            "Newest event in the fresh state a list used: appended to the log -> served.",
            ["serve"],
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self._event_to_served = {True: event_to_served.labels("first"), False: event_to_served.labels("repeat")}
        self._snapshot_served_age = Histogram(
            "lambdarec_served_snapshot_age_seconds",
            "Age of the served snapshot's data (since its cut-off) per list served.",
            buckets=SNAPSHOT_AGE_BUCKETS,
            registry=r,
        )
        self._served: OrderedDict[str, float] = OrderedDict()  # user -> newest append time already observed
        self._served_lock = threading.Lock()

    def observe_freshness(self, user_id: str | None, fresh: FreshUser | None, cutoff_s: float, now_s: float) -> None:
        """For one served list: the served snapshot's data age, and, when the list used the user's fresh state,
        how long ago its newest event was appended; ``serve="first"`` the first time this process serves that
        event to the user (the freshness SLO), ``"repeat"`` for later lists from the same state."""
        if cutoff_s:
            self._snapshot_served_age.observe(max(now_s - cutoff_s, 0.0))
        if fresh is None or not fresh.appended_at or user_id is None:
            return
        with self._served_lock:
            first = self._served.get(user_id, 0.0) < fresh.appended_at
            if first:
                self._served[user_id] = fresh.appended_at
                self._served.move_to_end(user_id)
                if len(self._served) > SERVED_USERS:
                    self._served.popitem(last=False)
        self._event_to_served[first].observe(max(now_s - fresh.appended_at, 0.0))

    def _share(self) -> float:
        total = self._counts[0] + self._counts[1]
        return self._counts[1] / total if total else 0.0


class DecodedRows(Collector):
    """``lambdarec_serving_fresh_state_rows_total{result}`` from the store's decoded-state map, read at scrape time
    (the read path only adds to two integers)."""

    def __init__(self, decoded: Callable[[], DecodedStates[FreshUser] | None]):
        self._decoded = decoded

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "lambdarec_serving_fresh_state_rows",
            "Fresh-state rows read, by whether the state was kept from an earlier read of the same bytes or decoded.",
            labels=["result"],
        )
        decoded = self._decoded()
        family.add_metric(["kept"], decoded.hits if decoded is not None else 0)
        family.add_metric(["decoded"], decoded.misses if decoded is not None else 0)
        yield family
