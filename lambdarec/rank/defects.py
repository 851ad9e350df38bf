"""Non-finite values (NaN, inf, or too large for float32) met in ranking inputs: dropped, and counted.

They are defects upstream (a poisoned trending row, a corrupt score or vector); ranking survives them so that no
NaN or inf ever reaches a response, and ``lambdarec_rank_nonfinite_total{where}`` tells operators they occurred.
The counter belongs to no registry by itself: serving adds it to its registry, the speed layer to the default one.

Example
-------
>>> clean, dropped = finite_or_zero(np.array([1.0, np.inf], np.float32), "merge")
>>> clean.tolist(), dropped
([1.0, 0.0], 1)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from prometheus_client import Counter

from lambdarec.model.rows import UserRow

FLOAT32_MAX = float(np.finfo(np.float32).max)

NONFINITE = Counter(
    "lambdarec_rank_nonfinite_total",
    "Non-finite values (NaN, inf, or beyond float32) found in ranking inputs and replaced, by where.",
    ["where"],
    registry=None,
)
_children = {w: NONFINITE.labels(w) for w in ("trending", "merge", "speed")}


def count_nonfinite(where: str, n: int = 1) -> None:
    """Count ``n`` non-finite values met at ``where`` (``trending``, ``merge``, ``speed``)."""
    if n > 0:
        _children[where].inc(n)


def nonfinite_count(where: str) -> float:
    """How many were counted at ``where`` so far in this process."""
    return _children[where]._value.get()


def finite_or_zero(x: np.ndarray, where: str, *, limit: float = FLOAT32_MAX) -> tuple[np.ndarray, int]:
    """``x`` with every NaN, inf or value beyond ``±limit`` replaced by 0, and how many were replaced (counted)."""
    if x.size == 0 or float(np.abs(x).max()) <= limit:  # NaN fails the comparison: one pass when all is well
        return x, 0
    bad = ~np.isfinite(x) | (np.abs(x) > limit)
    n = int(bad.sum())
    if n == 0:
        return x, 0
    count_nonfinite(where, n)
    return np.where(bad, 0, x).astype(x.dtype, copy=False), n


def finite_batch_row(row: UserRow | None) -> UserRow | None:
    """``row`` with non-finite candidate scores made unknown (NaN: scored as the floor), counted as defects."""
    if row is None or np.isfinite(row.scores).all():
        return row
    bad = ~np.isfinite(row.scores)
    count_nonfinite("merge", int(bad.sum()))
    return replace(row, scores=np.where(bad, np.nan, row.scores).astype(np.float32))
