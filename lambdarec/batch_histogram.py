"""A Prometheus histogram observed a batch of values at a time.

``prometheus_client.Histogram.observe`` is one Python call, a bucket search and two locked increments per value;
the speed consumer observed two histograms per event that way (about 6% of its CPU). ``BatchHistogram`` counts a
whole batch with one vectorised bucket search and exposes the same series as ``Histogram`` (``_bucket`` with
``le``, ``_count``, ``_sum``), so dashboards and alert rules read it unchanged.

Example
-------
>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> h = BatchHistogram("demo_seconds", "Demo.", buckets=(0.1, 1.0), registry=registry)
>>> h.observe_many([0.05, 0.1, 0.5, 7.0])
>>> [line for line in generate_latest(registry).decode().splitlines() if "_bucket" in line]
['demo_seconds_bucket{le="0.1"} 2.0', 'demo_seconds_bucket{le="1.0"} 3.0', 'demo_seconds_bucket{le="+Inf"} 4.0']
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class BatchHistogram:
    """A histogram without labels whose values arrive in batches (``observe_many``); thread-safe."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"histogram {name}: buckets must be distinct finite bounds, got {list(buckets)}")
        self._name, self._doc = name, documentation
        self._bounds = np.asarray(bounds)
        self._labels = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self._counts = np.zeros(len(bounds) + 1, dtype=np.int64)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: Iterable[float] | np.ndarray) -> None:
        """Count every value of ``values``: each goes to the first bucket whose bound it does not exceed (``le``)."""
        v = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64).reshape(-1)
        if not v.size:
            return
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"), minlength=self._counts.size)
        total = float(v.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        yield HistogramMetricFamily(
            self._name, self._doc, buckets=list(zip(self._labels, cumulative, strict=True)), sum_value=total
        )
