"""The explanations that name why a ranked item is there (the score components are :mod:`lambdarec.rank.pool`'s).

Pure functions of the snapshot model and what the merge pooled (see :mod:`lambdarec.rank.merge`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the model's loader reads the store; the math only reads a loaded model
    from lambdarec.model.snapshot import SnapshotModel


def nearest_seed(model: SnapshotModel, items: np.ndarray, seeds: dict[int, float]) -> np.ndarray:
    """For each item, the seed it is most similar to (-1 without seeds): what an explanation names."""
    if not seeds or items.size == 0:
        return np.full(items.size, -1)
    unit = model.unit_factors
    seed_idx = np.fromiter(seeds, dtype=np.int64)
    return seed_idx[np.argmax(unit[items] @ unit[seed_idx].T, axis=1)]


def reason(model: SnapshotModel, source: str, seed: int) -> str:
    """The one-line explanation of an item brought by ``source`` (naming ``seed`` for the session source)."""
    if source == "session" and seed >= 0:
        return f"because you viewed {model.item_ids[seed]}"
    return {
        "batch": "picked for you in the nightly run",
        "speed": "matches what you did recently",
        "session": "similar to your session",
        "trending": "trending now",
        "popular": "popular overall",
    }[source]
