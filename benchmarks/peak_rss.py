"""Peak resident memory of one call, measured in a fresh process: ``measure(fn, *args)``.

The call runs in a spawned child (no pages inherited from the benchmark's own process), which reports the
kernel's high-water mark of its resident set (``VmHWM``) and its resident set at the end (``VmRSS``).

Example
-------
>>> result, peak = measure(sum, [1, 2, 3])  # doctest: +SKIP
>>> result, peak.peak_mib > 0
(6, True)
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PeakRss:
    """A child process's peak (``VmHWM``) and final (``VmRSS``) resident memory, in MiB."""

    peak_mib: float
    final_mib: float


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``, ``RssAnon``...) in KiB; 0 where it is missing."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _measured(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, PeakRss]:
    result = fn(*args)
    return result, PeakRss(status_kib("VmHWM") / 1024, status_kib("VmRSS") / 1024)


def measure(fn: Callable[..., Any], *args: Any) -> tuple[Any, PeakRss]:
    """``fn(*args)`` in a spawned child process: its result (picklable) and the child's resident memory.

    ``fn`` must be importable at module level (the child imports it by name).
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, args).result()
