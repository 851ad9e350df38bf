"""What every benchmark shares: the result record and its goal, scales, and timing helpers.

A result may carry the goal its figure is held to (:class:`Goal`): the JSON line then says the goal and whether it
was ``met``, the table has a column for it, and :func:`verdict` sums them up (``python -m benchmarks NAME
--check`` exits 1 when one is not met).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

Scale = Literal["small", "medium", "large"]
SCALES: tuple[Scale, ...] = ("small", "medium", "large")


@dataclass(frozen=True)
class Goal:
    """What a figure must reach: its ratio at least ``ratio`` (ratios read higher-is-better, see :class:`Result`),
    ``ours`` at most ``at_most`` or at least ``at_least`` (in the figure's unit). Every bound given must hold."""

    ratio: float | None = None
    at_most: float | None = None
    at_least: float | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.at_most is None and self.at_least is None:
            raise ValueError("a goal needs a bound: ratio, at_most or at_least")

    def met(self, result: Result) -> bool:
        """Whether ``result`` reaches every bound (a figure that is not a number reaches none)."""
        if math.isnan(result.ours) or math.isnan(result.ratio):
            return False
        return (
            (self.ratio is None or result.ratio >= self.ratio)
            and (self.at_most is None or result.ours <= self.at_most)
            and (self.at_least is None or result.ours >= self.at_least)
        )

    def describe(self, unit: str) -> str:
        """The bounds as a reader writes them: ``ratio >= 0.6``, ``<= 250 ms``, ``>= 5000 rows/s``."""
        parts = [f"ratio >= {self.ratio:.3g}"] if self.ratio is not None else []
        parts += [f"<= {self.at_most:g} {unit}"] if self.at_most is not None else []
        parts += [f">= {self.at_least:g} {unit}"] if self.at_least is not None else []
        return ", ".join(parts)


@dataclass(frozen=True)
class Result:
    """One measured figure: ours against the reference measured in the same run.

    ``ratio`` is ours / reference, higher is better unless ``higher_is_better`` is False (then the printed
    ratio is reference / ours, so higher still reads as better).
    """

    bench: str
    metric: str
    ours: float
    reference: float
    unit: str
    scale: Scale
    higher_is_better: bool = True
    note: str = ""
    goal: Goal | None = None  # what the figure is held to; None: reported, not judged

    @property
    def ratio(self) -> float:
        num, den = (self.ours, self.reference) if self.higher_is_better else (self.reference, self.ours)
        return num / den if den else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the figure reaches its goal; None when it has none."""
        return None if self.goal is None else self.goal.met(self)

    def to_json(self) -> str:
        data = asdict(self)
        data["ratio"] = round(self.ratio, 4)
        del data["higher_is_better"]
        if not data["note"]:
            del data["note"]
        if self.goal is None:
            del data["goal"]
        else:
            data["goal"], data["met"] = self.goal.describe(self.unit), self.met
        return json.dumps(data)


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls, in seconds: the least noisy estimate on a shared machine."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def table(results: list[Result]) -> str:
    """A human table of results, each with its goal and whether it was met, and the verdict under it."""
    header = f"{'bench':<10} {'metric':<40} {'ours':>14} {'reference':>14} {'ratio':>8}  {'unit':<10} goal"
    lines = [header, "-" * len(header)]
    for r in results:
        goal = "" if r.goal is None else f"{r.goal.describe(r.unit)}: {'met' if r.met else 'NOT MET'}"
        row = f"{r.bench:<10} {r.metric:<40} {r.ours:>14.4g} {r.reference:>14.4g} {r.ratio:>8.3f}  {r.unit:<10} {goal}"
        lines.append(row.rstrip())
    return "\n".join([*lines, "", verdict(results)])


def verdict(results: list[Result]) -> str:
    """One line: how many of the results' goals were met, and which were not."""
    judged = [r for r in results if r.goal is not None]
    if not judged:
        return "goals: none judged in these results"
    missed = [r.metric for r in judged if not r.met]
    line = f"goals: {len(judged) - len(missed)} of {len(judged)} met"
    return line + (f"; not met: {', '.join(missed)}" if missed else "")
