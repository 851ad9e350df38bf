"""The memory benchmark's instrument: a call's peak RSS, measured in a fresh process."""

from __future__ import annotations

import numpy as np

from benchmarks.peak_rss import measure


def allocate_and_free(mib: int) -> int:
    """Touch ``mib`` MiB, free it, return how many bytes were touched (runs in the measured child)."""
    block = np.ones(mib << 18, dtype=np.float32)  # mib MiB of float32, every page written
    touched = int(block.nbytes)
    del block
    return touched


def test_measure_reports_the_childs_peak_not_its_end_nor_the_parents() -> None:
    baseline, small = measure(allocate_and_free, 1)
    touched, big = measure(allocate_and_free, 300)
    assert touched == 300 << 20 and baseline == 1 << 20
    assert big.peak_mib - small.peak_mib > 250  # the 300 MiB block counted at its peak
    assert big.final_mib < big.peak_mib - 250  # and freed before the end
