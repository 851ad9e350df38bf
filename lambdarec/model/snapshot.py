"""The in-memory snapshot model every layer reads: id maps, item factors, fold-in terms, neighbours, popularity.

The batch layer writes these arrays under the names in ``ARRAYS``; the speed layer folds users in against
``item_factors`` and ``yty``; serving and replay merge with ``neighbours`` and ``popularity_*``. One loader, so
what serving merges is what replay measures.

Example
-------
>>> model = SnapshotModel.load(store, store.current_version())   # doctest: +SKIP
>>> model.item_index["item-42"]
17
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lambdarec.store import OnlineStore, codec
from lambdarec.store.errors import CorruptRowError, ValidationFailedError
from lambdarec.store.lifecycle import check_activatable

# Array names inside a snapshot: the contract between the batch writer and every reader.
ITEM_IDS = "item_ids"  # <U, [n_items]
USER_IDS = "user_ids"  # <U, [n_users]
ITEM_FACTORS = "item_factors"  # float32, [n_items, f]
YTY = "yty"  # float64, [f, f]: Y^T Y for the ALS closed-form fold-in
POPULARITY_ALL = "popularity_all"  # float32, [n_items]: weighted interactions in the window
POPULARITY_RECENT = "popularity_recent"  # float32, [n_items]: the same over the recent window
ARRAYS = (ITEM_IDS, USER_IDS, ITEM_FACTORS, YTY, POPULARITY_ALL, POPULARITY_RECENT)
XTX = "xtx"  # float64, [f, f]: X^T X of the user factors, for brand-new items' vectors (optional: older snapshots
# lack it; lambdarec.model.fresh_items)
# What a reader loads: every array but the user ids, which no reader needs (memory is bounded by the catalogue).
MODEL_ARRAYS = (ITEM_IDS, ITEM_FACTORS, YTY, POPULARITY_ALL, POPULARITY_RECENT)


@dataclass(frozen=True)
class SnapshotModel:
    """A published snapshot's model, loaded once and shared read-only by request handlers."""

    version: str
    manifest: dict[str, Any]
    item_ids: np.ndarray
    item_factors: np.ndarray
    yty: np.ndarray
    popularity_all: np.ndarray
    popularity_recent: np.ndarray
    neighbours: np.ndarray  # int32 [n_items, m], -1 where an item has fewer neighbours
    neighbour_scores: np.ndarray  # float32 [n_items, m]
    solver: dict[str, float] = field(default_factory=dict)  # regularization, alpha
    corrupt_items: tuple[int, ...] = ()  # item rows that failed their checks at load: served without neighbours
    xtx: np.ndarray | None = None  # X^T X of the user factors; None for a snapshot published without it
    fresh_items: int = 0  # brand-new items appended after the snapshot's own (lambdarec.model.fresh_items.extend)

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Item id -> row in ``item_factors``."""
        return {str(item): i for i, item in enumerate(self.item_ids.tolist())}

    @cached_property
    def unit_factors(self) -> np.ndarray:
        """Item factors scaled to unit length, for cosine similarity."""
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        return (self.item_factors / np.maximum(norms, 1e-12)).astype(np.float32)

    @property
    def cutoff_s(self) -> float:
        """Event time (epoch seconds) of the data cut-off: fresh events older than this are in the batch."""
        return float(self.manifest.get("data_cutoff_s", 0.0))

    @cached_property
    def log_positions(self) -> dict[int, int]:
        """Per event-log partition, the next offset the snapshot's input did not cover (empty: it read no log)."""
        return {int(p): int(n) for p, n in (self.manifest.get("log_positions") or {}).items()}

    def covers(self, position: tuple[int, int] | None, event_time_s: float) -> bool:
        """Whether the batch behind this snapshot has the event at ``position`` (log partition, offset).

        Decided by log position only: an event the snapshot's input did not read stays fresh whatever its
        event time. A fresh event recorded before positions were kept (``position`` None) falls back to the
        event-time cut-off.
        """
        if position is None:
            return event_time_s <= self.cutoff_s
        return position[1] < self.log_positions.get(position[0], 0)

    @property
    def built_at_s(self) -> float:
        """Wall-clock time the batch job that built this snapshot started (0 when unknown)."""
        return float(self.manifest.get("built_at_s", 0.0))

    @property
    def event_weights(self) -> dict[str, float]:
        return dict(self.manifest.get("event_weights", {}))

    @cached_property
    def popular_order(self) -> np.ndarray:
        """Item indices by all-time popularity, most popular first."""
        return np.argsort(-self.popularity_all, kind="stable").astype(np.int32)

    @cached_property
    def popular_rank(self) -> np.ndarray:
        """Each item's place in ``popular_order`` (int64): the merge's tie-break, popularity then item index, as
        one sort key, computed once per snapshot instead of per list."""
        rank = np.empty(len(self.popular_order), dtype=np.int64)
        rank[self.popular_order] = np.arange(len(self.popular_order))
        return rank

    @cached_property
    def item_id_list(self) -> list[str]:
        """``item_ids`` as Python strings, once per snapshot: a list names its items without a conversion each."""
        return [str(item) for item in self.item_ids.tolist()]

    @cached_property
    def neighbours_full(self) -> bool:
        """Whether every item has a full row of neighbours (no -1): the merge then reads them without a mask."""
        return not self.neighbours.size or int(self.neighbours.min()) >= 0

    @cached_property
    def recent_order(self) -> np.ndarray:
        """Item indices by recent popularity, most popular first."""
        return np.argsort(-self.popularity_recent, kind="stable").astype(np.int32)

    @classmethod
    def load(cls, store: OnlineStore, version: str, *, strict: bool = False) -> SnapshotModel:
        """Read a published snapshot's arrays and item rows from ``store``.

        A corrupt array raises ``CorruptRowError``. A corrupt item row raises too when ``strict``; otherwise that
        item is served without neighbours and listed in ``corrupt_items``, so one bad row costs one item.
        """
        info = store.get_snapshot(version)
        manifest = dict(info.manifest or {})
        arrays = {name: store.read_array(version, name) for name in MODEL_ARRAYS}
        xtx = store.read_array(version, XTX) if XTX in manifest.get("arrays", ()) else None
        n_items = len(arrays[ITEM_IDS])
        _check_shapes(version, arrays)
        try:
            rows = store.read_items(version)
            corrupt: list[int] = []
        except CorruptRowError as exc:
            if strict:
                raise
            rows, corrupt = exc.rows, list(exc.keys)
        for idx in list(rows):
            try:
                codec.check_item_indices(rows[idx], n_items)
            except CorruptRowError:
                if strict:
                    raise
                del rows[idx]
                corrupt.append(idx)
        width = max((len(r.neighbours) for r in rows.values()), default=0)
        neighbours = np.full((n_items, width), -1, dtype=np.int32)
        scores = np.zeros((n_items, width), dtype=np.float32)
        for idx, row in rows.items():
            neighbours[idx, : len(row.neighbours)] = row.neighbours
            scores[idx, : len(row.scores)] = row.scores
        model_meta = manifest.get("model", {})
        return cls(
            version=version,
            manifest=manifest,
            item_ids=arrays[ITEM_IDS],
            item_factors=np.ascontiguousarray(arrays[ITEM_FACTORS], dtype=np.float32),
            yty=np.asarray(arrays[YTY], dtype=np.float64),
            popularity_all=np.asarray(arrays[POPULARITY_ALL], dtype=np.float32),
            popularity_recent=np.asarray(arrays[POPULARITY_RECENT], dtype=np.float32),
            neighbours=neighbours,
            neighbour_scores=scores,
            solver={
                "regularization": float(model_meta.get("regularization", 0.0)),
                "alpha": float(model_meta.get("alpha", 1.0)),
            },
            corrupt_items=tuple(sorted(corrupt)),
            xtx=None if xtx is None else np.asarray(xtx, dtype=np.float64),
        )


def _check_shapes(version: str, arrays: dict[str, np.ndarray]) -> None:
    """A ``CorruptRowError`` unless the arrays agree on the number of items and factors."""
    n_items, f = len(arrays[ITEM_IDS]), arrays[ITEM_FACTORS].shape[-1] if arrays[ITEM_FACTORS].ndim == 2 else -1
    problems = [
        f"{name} has shape {arrays[name].shape}, expected {want}"
        for name, want in (
            (ITEM_FACTORS, (n_items, f)),
            (YTY, (f, f)),
            (POPULARITY_ALL, (n_items,)),
            (POPULARITY_RECENT, (n_items,)),
        )
        if arrays[name].shape != want
    ]
    if problems:
        raise CorruptRowError(f"snapshot {version}: " + "; ".join(problems))


def check_snapshot(
    store: OnlineStore, version: str, sample_users: int, model: SnapshotModel | None = None
) -> list[str]:
    """Why ``version`` must not become current; empty when it may.

    What ``store.activate`` validates (row counts, array checksums), plus: the model loads strictly (shapes
    agree, every item row passes its checksum and names items of the catalogue), and ``sample_users`` user rows,
    evenly spread over the snapshot's users, pass theirs (``store.activate_check_users``). ``model``, when the
    caller has loaded it already, is checked instead of loading it again.

    Raises
    ------
    SnapshotNotFoundError, SnapshotStateError
        ``version`` is unknown, or not published.
    """
    info = store.get_snapshot(version)
    try:
        check_activatable(store, info)
        if model is None:
            model = SnapshotModel.load(store, version, strict=True)
        elif model.corrupt_items:
            return [f"snapshot {version}: item rows {list(model.corrupt_items[:20])} failed their checks"]
        if sample_users > 0:
            user_ids = store.read_array(version, USER_IDS)
            picks = np.unique(np.linspace(0, len(user_ids) - 1, min(sample_users, len(user_ids))).astype(np.int64))
            rows = store.read_users(version, [str(u) for u in user_ids[picks]]) if len(user_ids) else {}
            for row in rows.values():
                codec.check_user_indices(row, len(model.item_ids))
    except ValidationFailedError as exc:
        return list(exc.problems)
    except (CorruptRowError, KeyError) as exc:
        return [str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)]
    return []
