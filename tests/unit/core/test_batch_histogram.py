"""A histogram observed a batch at a time scrapes as the same series prometheus_client's Histogram gives."""

from __future__ import annotations

import doctest
import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import lambdarec.batch_histogram
from lambdarec.batch_histogram import BatchHistogram

BUCKETS = (0.005, 0.01, 0.25, 1, 2.5, 60, 3600)


def series(registry: CollectorRegistry) -> list[str]:
    """The scraped lines but the creation time (a Histogram's own clock)."""
    return [line for line in generate_latest(registry).decode().splitlines() if line and "_created" not in line]


def without_sum(registry: CollectorRegistry) -> list[str]:
    return [line for line in series(registry) if "_sum " not in line]


def total(registry: CollectorRegistry) -> float:
    return next(float(line.split()[-1]) for line in series(registry) if "_sum " in line)


def test_the_scrape_equals_a_histogram_observed_value_by_value() -> None:
    rng = np.random.default_rng(3)
    batches = [rng.exponential(2.0, size) for size in (1, 0, 37, 500)]
    batches.append(np.array([0.0, 0.005, 0.01, 1.0, 3600.0, 3600.5, 1e9]))  # on the bounds, and past the last
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_seconds", "Doc.", buckets=BUCKETS, registry=ours)
    single = Histogram("x_seconds", "Doc.", buckets=BUCKETS, registry=theirs)
    for values in batches:
        batch.observe_many(values)
        for v in values:
            single.observe(float(v))
    # buckets and count exactly; the sum to rounding (a batch is summed pairwise, a Histogram value by value)
    assert without_sum(ours) == without_sum(theirs)
    assert total(ours) == pytest.approx(total(theirs), rel=1e-12)
    assert f"x_seconds_count {sum(map(len, batches))}.0" in series(ours)


def test_a_value_equal_to_a_bound_is_in_that_bucket() -> None:
    registry = CollectorRegistry()
    BatchHistogram("b_seconds", "Doc.", buckets=(0.5, 1.0), registry=registry).observe_many([0.5, 1.0, 1.0])
    assert series(registry)[2:4] == ['b_seconds_bucket{le="0.5"} 1.0', 'b_seconds_bucket{le="1.0"} 3.0']


def test_lists_and_generators_count_as_arrays_do() -> None:
    registry = CollectorRegistry()
    h = BatchHistogram("y_seconds", "Doc.", buckets=(1.0,), registry=registry)
    h.observe_many([0.5, 2.0])
    h.observe_many(v for v in (0.25,))
    assert series(registry)[2:] == [
        'y_seconds_bucket{le="1.0"} 2.0',
        'y_seconds_bucket{le="+Inf"} 3.0',
        "y_seconds_count 3.0",
        "y_seconds_sum 2.75",
    ]


def test_batches_from_many_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    h = BatchHistogram("z_seconds", "Doc.", buckets=(0.5,), registry=registry)
    threads = [threading.Thread(target=lambda: [h.observe_many(np.full(10, 0.25)) for _ in range(200)])
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 'z_seconds_bucket{le="0.5"} 8000.0' in series(registry)
    assert "z_seconds_sum 2000.0" in series(registry)


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (float("inf"),)])
def test_buckets_that_are_no_histogram_are_refused(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets must be distinct finite bounds"):
        BatchHistogram("w_seconds", "Doc.", buckets=buckets, registry=None)


def test_the_module_example_runs() -> None:
    result = doctest.testmod(lambdarec.batch_histogram)
    assert result.attempted > 0 and result.failed == 0
