"""Steps of the merge (:mod:`lambdarec.rank.merge`) whose answer depends only on the snapshot model and objects of
the request, kept from one call to the next.

Serving ranks each request once, and each answer is simply recomputed; a replay ranks several variants of one event
with the same ``exclude`` set, batch row and fresh state, so every variant after the first reuses the item lookups,
the recent items' weights and the batch row's arrays instead of recomputing them. Keys are the objects themselves
(``is``), and the entries hold them, so a key can never be mistaken for a new object at a reused address. One answer
per kind is held, except for fresh states: the vectors and item indices of up to ``STATES_KEPT`` living states are
kept, since serving reads an unchanged state as the same object again (:mod:`lambdarec.store.decoded`) and
interleaves many users' requests. After a flip the old snapshot stays referenced only until the next request.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank.defects import count_nonfinite, finite_batch_row

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel

# The last answer of each step below that depends only on the model and a request object; swapped in whole, so
# threads never see half of one. A replay ranks the variants of one event with the same ``exclude`` set and fresh
# state (often hundreds of items), so each variant after the first reuses them.
_last: dict[str, tuple] = {}
# Item indices a caller already holds for request objects (a replay keeps each user's touched items' indices as
# events arrive), by the object's id: :func:`item_indices` takes them instead of looking every name up. Set per
# context (so per thread) for the span of one call (:func:`known_indices`); entries hold their key and model.
_known: ContextVar[dict[int, tuple[object, SnapshotModel, np.ndarray]] | None] = ContextVar("known", default=None)


class _ByState:
    """Answers derived from fresh states, by the state object, for as long as it lives (each entry holds only a
    weak reference to its state, and goes when the state goes: nothing is kept alive by it), at most ``size``
    (the oldest go first: a replay holds every user's state at once). Serving reads an unchanged state as the
    same object again (:mod:`lambdarec.store.decoded`), so a user's next request finds what the last one derived;
    a replay asks about one state many times in a row."""

    def __init__(self, size: int):
        self._size = size
        self._data: dict[int, tuple[weakref.ref[FreshUser], object, object]] = {}
        self._model: object = None  # the snapshot every entry was derived in (None: answers of the state alone)
        self._lock = threading.RLock()  # a state may die, and its entry go, on any thread

    def get(self, fresh: FreshUser, model: object = None) -> object | None:
        kept = self._data.get(id(fresh))
        return kept[2] if kept is not None and kept[0]() is fresh and kept[1] is model else None

    def put(self, fresh: FreshUser, value: object, model: object = None) -> None:
        key = id(fresh)
        with self._lock:
            if model is not self._model:  # a flip: no entry keeps the old snapshot alive
                self._data.clear()
                self._model = model
            self._data.pop(key, None)
            self._data[key] = (weakref.ref(fresh, lambda ref: self._gone(key, ref)), model, value)
            if len(self._data) > self._size:
                del self._data[next(iter(self._data))]  # the oldest

    def _gone(self, key: int, ref: weakref.ref[FreshUser]) -> None:
        with self._lock:
            kept = self._data.get(key)
            if kept is not None and kept[0] is ref:
                del self._data[key]


STATES_KEPT = 4096  # at most this many fresh states' derived answers (a vector and an index array each)
_vectors, _fresh_indices = _ByState(STATES_KEPT), _ByState(STATES_KEPT)


def finite_vector(fresh: FreshUser) -> np.ndarray | None:
    """The fresh state's vector as float32, None when it holds NaN or inf (a defect, counted at each call)."""
    kept = _vectors.get(fresh)
    if kept is not None:
        return kept  # type: ignore[return-value]
    # a list of Python floats reads fastest as float64 (no per-element type discovery), then rounds to float32
    vector = np.asarray(fresh.vector, dtype=np.float64).astype(np.float32)
    if not np.isfinite(vector).all():
        count_nonfinite("merge")
        return None
    _vectors.put(fresh, vector)
    return vector


# Batch rows whose scores were found finite, by id: an entry goes with its row (so an id reused by a later row never
# matches), and serving keeps a user's row for the whole snapshot (serving_layer.user_cache), so each is checked once
_finite_rows: weakref.WeakValueDictionary[int, UserRow] = weakref.WeakValueDictionary()


def finite_row(row: UserRow) -> UserRow:
    """``finite_batch_row(row)``: the row itself when its scores are finite (remembered for as long as the row
    lives), else a copy with the non-finite scores made unknown (checked, and counted as defects, at each call)."""
    if _finite_rows.get(id(row)) is row:
        return row
    checked = finite_batch_row(row)
    if checked is row:
        _finite_rows[id(row)] = row
    return checked  # type: ignore[return-value]


def item_indices(
    model: SnapshotModel, key: frozenset[str] | FreshUser, items: Callable[[], Iterable[str]]
) -> np.ndarray:
    """The indices in ``model`` of the items ``items()`` names (those it has): a function of ``model`` and ``key``,
    which is never changed in place (frozen sets, and fresh states the speed layer replaces, never edits)."""
    state = isinstance(key, FreshUser)  # kept per state (several users' requests interleave); a set: the last
    if state:
        kept = _fresh_indices.get(key, model)  # type: ignore[arg-type]
        if kept is not None:
            return kept  # type: ignore[return-value]
    else:
        last = _last.get("exclude")
        if last is not None and last[0] is model and last[1] is key:
            return last[2]
    known = _known.get()
    if known is not None and (hit := known.get(id(key))) is not None and hit[0] is key and hit[1] is model:
        return hit[2]  # not remembered: handed indices hold only within their block
    found = np.fromiter(map(model.item_index.get, items(), repeat(-1)), dtype=np.int64)  # no frame per item
    found = found[found >= 0]
    if state:
        _fresh_indices.put(key, found, model)  # type: ignore[arg-type]
    else:
        _last["exclude"] = (model, key, found)
    return found


@contextmanager
def known_indices(
    model: SnapshotModel, pairs: Iterable[tuple[frozenset[str] | FreshUser, np.ndarray]]
) -> Iterator[None]:
    """Within the block, :func:`item_indices` of each ``(key, indices)`` of ``pairs`` in ``model`` is
    ``indices``, which the caller guarantees are the indices in ``model`` of the items ``key`` names that it has
    (in any order): a replay hands each event's ``exclude`` set with the indices it keeps as events arrive. For a
    fresh state the indices of its seen items (``seeds.fresh_items``) may also name items of ``exclude`` of every
    request that holds that state: the block only unions the two into a request's seen set, so the replay hands a
    state whose items its ``exclude`` holds with the ``exclude`` indices, and no name is looked up."""
    token = _known.set({id(key): (key, model, np.asarray(idx, dtype=np.int64)) for key, idx in pairs})
    try:
        yield
    finally:
        _known.reset(token)


def recent_seeds(
    model: SnapshotModel, fresh: FreshUser, now_s: float, half_life_s: float, weigh: Callable[[], dict[int, float]]
) -> dict[int, float]:
    """``weigh()``: the fresh state's recent items and their recency weights at ``now_s`` (a function of ``model``,
    ``fresh``, ``now_s`` and ``half_life_s``), which the caller never changes."""
    last = _last.get("seeds")
    if last is not None and last[0] is model and last[1] is fresh and last[2] == (now_s, half_life_s):
        return last[3]
    seeds = weigh()
    _last["seeds"] = (model, fresh, (now_s, half_life_s), seeds)
    return seeds


def candidate_arrays(row: UserRow, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch row's candidates as int64 indices, and each of the ``n_items`` items' batch score as float32 (NaN
    for items it does not propose; a repeated candidate keeps its first score), as the merge's pool reads them."""
    last = _last.get("row")
    if last is not None and last[0] is row and last[1] == n_items:
        return last[2], last[3]
    candidates = np.asarray(row.candidates, dtype=np.int64).reshape(-1)
    by_item = np.full(n_items, np.nan, dtype=np.float32)
    by_item[candidates[::-1]] = np.asarray(row.scores, dtype=np.float32).reshape(-1)[::-1]
    _last["row"] = (row, n_items, candidates, by_item)
    return candidates, by_item
