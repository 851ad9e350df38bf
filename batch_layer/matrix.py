"""The clean interaction frame aggregated into a user x item matrix with its id maps, joined back to ids, and
split into a training part and a holdout by time.

Example
-------
>>> f = pl.DataFrame({"user_id": ["b", "a"], "item_id": ["x", "y"], "weight": [1.0, 2.0], "ts": [1, 2]})
>>> build_matrix(f).shape, [part.height for part in split_holdout(f, 0.5)]
((2, 2), [1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Summed interaction weights as a user x item CSR matrix with its id maps.

    ``matrix[u, i]`` belongs to user ``user_ids[u]`` and item ``item_ids[i]``; both id arrays are sorted
    (code-point order of the text ids), so the same interactions always give the same layout.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: sp.csr_matrix

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items)."""
        return (len(self.user_ids), len(self.item_ids))


def index_of(ids: pl.Series, sorted_ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in the id array, -1 where absent (a hash join, fast for millions of rows).

    Example
    -------
    >>> index_of(pl.Series(["b", "z", "a"]), np.array(["a", "b"])).tolist()
    [1, -1, 0]
    """
    lookup = pl.DataFrame({"_id": sorted_ids.astype(str), "_idx": np.arange(len(sorted_ids), dtype=np.int64)})
    joined = pl.DataFrame({"_id": ids.cast(pl.Utf8)}).join(lookup, on="_id", how="left", maintain_order="left")
    return joined["_idx"].fill_null(-1).to_numpy()


def build_matrix(frame: pl.DataFrame) -> Interactions:
    """Sum the weights of each (user, item) pair into a float32 CSR matrix.

    Parameters
    ----------
    frame
        Canonical interactions with at least ``user_id``, ``item_id`` and ``weight``.

    Example
    -------
    >>> f = pl.DataFrame({"user_id": ["b", "a", "b"], "item_id": ["x", "x", "x"], "weight": [1.0, 2.0, 3.0]})
    >>> m = build_matrix(f)
    >>> m.user_ids.tolist(), m.matrix.toarray().ravel().tolist()
    (['a', 'b'], [2.0, 4.0])
    """
    users = frame["user_id"].unique().drop_nulls().sort()
    items = frame["item_id"].unique().drop_nulls().sort()
    rows = frame["user_id"].cast(pl.Enum(users)).to_physical().to_numpy()
    cols = frame["item_id"].cast(pl.Enum(items)).to_physical().to_numpy()
    weights = frame["weight"].cast(pl.Float32).to_numpy()
    matrix = sp.csr_matrix((weights, (rows, cols)), shape=(len(users), len(items)), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.sort_indices()
    return Interactions(user_ids=users.to_numpy().astype(str), item_ids=items.to_numpy().astype(str), matrix=matrix)


def split_holdout(frame: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out the newest ``fraction`` of the events, by timestamp.

    The cut is a time: every event at or after it is held out and every earlier one trains, so no
    training event is newer than a held-out one. Events sharing the cut's timestamp all go to the holdout,
    which can make it slightly larger than ``fraction``.

    Parameters
    ----------
    frame
        Canonical interactions (``ts`` column).
    fraction
        Share of events to hold out, ``0 <= fraction < 1`` (``batch.gate.holdout_fraction``).

    Returns
    -------
    (train, holdout)
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction must be in [0, 1); got {fraction}")
    held = round(frame.height * fraction)
    if held == 0:
        return frame, frame.clear()
    cut = frame["ts"].sort()[frame.height - held]
    return frame.filter(pl.col("ts") < cut), frame.filter(pl.col("ts") >= cut)
