"""Steps of the merge (:mod:`lambdarec.rank.merge`) whose answer depends only on the snapshot model and objects of
the request, kept from one call to the next.

Serving ranks each request once, and each answer is simply recomputed; a replay ranks several variants of one event
with the same ``exclude`` set and the same fresh state, so every variant after the first reuses the item lookups and
the speed layer's top items instead of recomputing them. Keys are the objects themselves (``is``), and the
entries hold them, so a key can never be mistaken for a new object at a reused address. One answer per kind is
held: after a flip the old snapshot stays referenced only until the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank.defects import count_nonfinite

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

# The last answer of each step below that depends only on the model, a request object and (for "speed") the seen
# set; swapped in whole, so threads never see half of one. A replay ranks the variants of one event with the same
# ``exclude`` set and fresh state (often hundreds of items), so each variant after the first reuses them.
_last: dict[str, tuple] = {}


def last_answer(kind: str, key: tuple) -> np.ndarray | None:
    """What :func:`keep` kept for ``kind`` if it was kept for the same objects ``key`` (compared with ``is``)."""
    last = _last.get(kind)
    if last is not None and len(last[0]) == len(key) and all(a is b for a, b in zip(last[0], key, strict=True)):
        return last[1]
    return None


def keep(kind: str, key: tuple, answer: np.ndarray) -> None:
    """Keep ``answer`` for the objects ``key``; the caller never changes it in place (it copies to edit it)."""
    _last[kind] = (key, answer)


def finite_vector(fresh: FreshUser) -> np.ndarray | None:
    """The fresh state's vector as float32, None when it holds NaN or inf (a defect, counted at each call)."""
    last = _last.get("vector")
    if last is not None and last[0] is fresh:
        return last[1]
    vector = np.asarray(fresh.vector, dtype=np.float32)
    if not np.isfinite(vector).all():
        count_nonfinite("merge")
        return None
    _last["vector"] = (fresh, vector)
    return vector


def item_indices(
    model: SnapshotModel, key: frozenset[str] | FreshUser, items: Callable[[], Iterable[str]]
) -> np.ndarray:
    """The indices in ``model`` of the items ``items()`` names (those it has): a function of ``model`` and ``key``,
    which is never changed in place (frozen sets, and fresh states the speed layer replaces, never edits)."""
    kind = type(key).__name__
    last = _last.get(kind)
    if last is not None and last[0] is model and last[1] is key:
        return last[2]
    index = model.item_index
    found = np.fromiter((i for item in items() if (i := index.get(item)) is not None), dtype=np.int64)
    _last[kind] = (model, key, found)
    return found


def fresh_scores(model: SnapshotModel, fresh: FreshUser | None, vector: np.ndarray) -> np.ndarray:
    """The fresh vector's score of every item in ``model`` (a function of ``model`` and ``fresh``)."""
    last = _last.get("scores")
    if last is not None and last[0] is model and last[1] is fresh:
        return last[2]
    scores = model.item_factors @ vector
    _last["scores"] = (model, fresh, scores)
    return scores


def speed_top(
    model: SnapshotModel, fresh: FreshUser | None, vector: np.ndarray, n: int, seen: np.ndarray
) -> np.ndarray:
    """The ``n`` best unseen items for the fresh vector (a function of ``model``, ``fresh`` and ``seen``), best
    first, ties by index. Every item's order is kept for the state, so a variant whose seen set differs (a
    session widens it) only filters it."""
    last = _last.get("speed")
    if last is not None and last[0] is model and last[1] is fresh:
        order = last[2]
    else:
        scores = fresh_scores(model, fresh, vector)
        order = np.argsort(-scores, kind="stable")  # ties by index; NaN (never from a finite vector) last
        _last["speed"] = (model, fresh, order)
    return order[~seen[order]][:n]


def candidate_arrays(row: UserRow) -> tuple[np.ndarray, np.ndarray]:
    """The batch row's candidates as int64 indices and their scores as float32, as the merge's pool holds them."""
    last = _last.get("row")
    if last is not None and last[0] is row:
        return last[1], last[2]
    candidates = np.asarray(row.candidates, dtype=np.int64).reshape(-1)
    scores = np.asarray(row.scores, dtype=np.float32).reshape(-1)
    _last["row"] = (row, candidates, scores)
    return candidates, scores
