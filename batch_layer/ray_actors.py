"""The Ray engine's actors: each holds the model once and scores (and writes) the user blocks Ray Data hands it.

:class:`UserBlockScorer` scores with the local engine's own code (:func:`batch_layer.candidates.iter_candidates`
and a searcher from ``make_searcher``, or the driver's FAISS index); :class:`UserBlockWriter` also writes the
rows, built by :func:`batch_layer.rows.user_rows`, to a store it opens itself. :mod:`batch_layer.ray_engine`
runs them.

Example
-------
>>> shared = batch_layer.ray_engine.share_model(u, y, seen, ids)  # doctest: +SKIP
>>> scorer = UserBlockScorer(shared, actor_settings(batch))       # doctest: +SKIP
>>> scorer({"data": np.arange(100)})["rows"]                      # doctest: +SKIP
array([100])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from batch_layer.candidates import CandidateBlock, Searcher, iter_candidates, make_searcher
from batch_layer.rows import user_rows
from lambdarec.settings import BatchSettings, StoreSettings
from lambdarec.store import open_store


class UserBlockScorer:
    """A Ray actor that holds the model once and scores the user blocks Ray Data hands it, writing nothing.

    Parameters
    ----------
    shared
        From :func:`batch_layer.ray_engine.share_model`: object refs in a dict, which Ray Data passes
        unresolved, so the actor fetches them once here (zero-copy from its node's object store).
    batch
        The batch settings as one actor scores (:func:`actor_settings`).
    """

    def __init__(self, shared: dict[str, Any], batch: BatchSettings) -> None:
        import ray  # lazily: ray is an optional extra, off the local engine's import path

        got = dict(zip(shared, ray.get(list(shared.values())), strict=True))
        self.user_factors, self.item_factors, self.user_ids = got["user_factors"], got["item_factors"], got["user_ids"]
        seen = got["seen"]
        self.seen = sp.csr_matrix((seen["data"], seen["indices"], seen["indptr"]), shape=seen["shape"], copy=False)
        shipped = got.get("searcher")
        self.searcher: Searcher = make_searcher(self.item_factors, batch) if shipped is None else shipped
        self.batch = batch

    def candidates(self, users: np.ndarray) -> Iterator[CandidateBlock]:
        """The users' candidates in ``batch.user_block`` pieces: the local engine's function and searcher."""
        return iter_candidates(
            self.user_factors,
            self.item_factors,
            self.seen,
            self.batch.top_k,
            self.batch.user_block,
            searcher=self.searcher,
            users=users,
        )

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score the users in ``block["data"]``; returns their first user and how many were scored."""
        users = np.asarray(block["data"], dtype=np.int64)
        scored = sum(len(piece.users) for piece in self.candidates(users))
        return {"first_user": users[:1], "rows": np.array([scored], dtype=np.int64)}


class UserBlockWriter(UserBlockScorer):
    """A :class:`UserBlockScorer` that writes each piece's rows to the store it opens, one part per piece.

    Parameters
    ----------
    shared, batch
        As for :class:`UserBlockScorer`.
    store
        Store settings (:func:`batch_layer.ray_cluster.for_workers`); the actor opens its own store.
    version
        The snapshot version in state ``writing``.
    """

    def __init__(self, shared: dict[str, Any], batch: BatchSettings, store: StoreSettings, version: str) -> None:
        super().__init__(shared, batch)
        self.version = version
        self.store = open_store(store)

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score and write the users in ``block["data"]``; returns their first user and the rows written."""
        users = np.asarray(block["data"], dtype=np.int64)
        written = 0
        for piece in self.candidates(users):
            part = f"users-{int(piece.users[0])}"  # as the local engine names it: a retry rewrites the same part
            written += self.store.write_users(self.version, user_rows(self.user_ids, self.seen, piece), part=part)
            self.written(piece)
        return {"first_user": users[:1], "rows": np.array([written], dtype=np.int64)}

    def written(self, piece: CandidateBlock) -> None:
        """Called after each piece is written; nothing here (the tests' fault-injecting subclass kills the actor)."""

    def __del__(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


def actor_settings(batch: BatchSettings) -> BatchSettings:
    """``batch`` as one actor scores: ``ray_cpus_per_actor`` threads; on the CPU unless it was given GPUs."""
    threads = max(1, int(batch.ray.cpus_per_actor))
    device = batch.device if batch.ray.gpus_per_actor > 0 else "cpu"
    return batch.model_copy(update={"threads": threads, "device": device})
