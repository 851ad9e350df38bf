"""What every benchmark shares: the result record, scales, and timing helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

Scale = Literal["small", "medium", "large"]
SCALES: tuple[Scale, ...] = ("small", "medium", "large")


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

    @property
    def ratio(self) -> float:
        num, den = (self.ours, self.reference) if self.higher_is_better else (self.reference, self.ours)
        return num / den if den else float("inf")

    def to_json(self) -> str:
        data = asdict(self)
        data["ratio"] = round(self.ratio, 4)
        del data["higher_is_better"]
        if not data["note"]:
            del data["note"]
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
    """A human table of results."""
    header = f"{'bench':<10} {'metric':<40} {'ours':>14} {'reference':>14} {'ratio':>8}  unit"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.bench:<10} {r.metric:<40} {r.ours:>14.4g} {r.reference:>14.4g} {r.ratio:>8.3f}  {r.unit}")
    return "\n".join(lines)
