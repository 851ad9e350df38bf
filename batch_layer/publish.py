"""Write a trained model into the store as a new snapshot version, streamed per user block, then publish it.

Until ``publish`` flips the pointer, the version is ``writing`` and no reader sees it; ``publish`` validates
row counts and array checksums first, so a snapshot missing a block is refused rather than served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from batch_layer.candidates import candidate_recall, iter_candidates, make_searcher
from batch_layer.interactions import Interactions
from batch_layer.neighbours import item_neighbours
from batch_layer.popularity import Popularity
from lambdarec.logs import get_logger
from lambdarec.model import snapshot as names
from lambdarec.model.factors import Factors
from lambdarec.settings import BatchSettings
from lambdarec.store import ItemRow, OnlineStore, UserRow

log = get_logger(__name__)
_ITEM_PART = 8192  # item rows per write call


def write_snapshot(
    store: OnlineStore,
    data: Interactions,
    factors: Factors,
    pop: Popularity,
    manifest: dict[str, Any],
    batch: BatchSettings,
    *,
    progress: bool = True,
) -> tuple[str, dict[str, float]]:
    """Begin a version, write arrays, user rows and item rows, validate and publish. Returns (version, timings)."""
    timings = {"candidates": 0.0, "write": 0.0}
    version = store.begin_snapshot(
        {
            "as_of": manifest["as_of"],
            "input_fingerprint": manifest["input_fingerprint"],
            "config_hash": manifest["config_hash"],
            "counts": manifest["counts"],
        }
    )
    log.info("batch.writing", version=version)
    t0 = time.perf_counter()
    arrays = {
        names.ITEM_IDS: data.item_ids,
        names.USER_IDS: data.user_ids,
        names.ITEM_FACTORS: factors.item_factors,
        names.YTY: factors.solver.yty,
        names.POPULARITY_ALL: pop.all_time,
        names.POPULARITY_RECENT: pop.recent,
    }
    for name, array in arrays.items():
        store.write_array(version, name, np.asarray(array))
    manifest["arrays"] = list(arrays)
    timings["write"] += time.perf_counter() - t0

    searcher = make_searcher(factors.item_factors, batch)
    if batch.index != "exact":
        t0 = time.perf_counter()
        recall = candidate_recall(
            searcher,
            factors.user_factors,
            factors.item_factors,
            data.matrix,
            batch.top_k,
            batch.recall_sample,
            seed=batch.seed,
            threads=batch.threads,
        )
        manifest["index"] = {
            "kind": batch.index,
            f"recall@{batch.top_k}": round(recall, 4),
            "sample_users": min(batch.recall_sample, len(data.user_ids)),
        }
        timings["index_recall"] = time.perf_counter() - t0
    else:
        manifest["index"] = {"kind": "exact"}

    bar = tqdm(total=len(data.user_ids), desc="candidates", unit="user", disable=not progress, leave=False)
    blocks = iter_candidates(
        factors.user_factors,
        factors.item_factors,
        data.matrix,
        batch.top_k,
        batch.user_block,
        threads=batch.threads,
        searcher=searcher,
    )
    while True:
        t0 = time.perf_counter()
        block = next(blocks, None)
        timings["candidates"] += time.perf_counter() - t0
        if block is None:
            break
        t0 = time.perf_counter()
        store.write_users(version, _user_rows(data, block), part=f"users-{int(block.users[0])}")
        timings["write"] += time.perf_counter() - t0
        bar.update(len(block.users))
    bar.close()

    t0 = time.perf_counter()
    neigh = item_neighbours(factors.item_factors, batch.neighbours, block=batch.user_block, threads=batch.threads)
    timings["neighbours"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(data.item_ids), _ITEM_PART):
        store.write_items(version, _item_rows(neigh.items, neigh.scores, start), part=f"items-{start}")
    timings["write"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    store.publish(version, {**manifest, "version": version, "published": True})
    timings["publish"] = time.perf_counter() - t0
    return version, timings


def _user_rows(data: Interactions, block: Any) -> Iterator[UserRow]:
    m = data.matrix
    for row, (items, scores) in enumerate(zip(block.items, block.scores, strict=True)):
        u = int(block.users[row])
        keep = items >= 0
        lo, hi = m.indptr[u], m.indptr[u + 1]
        yield UserRow(str(data.user_ids[u]), items[keep], scores[keep], m.indices[lo:hi], m.data[lo:hi])


def _item_rows(items: np.ndarray, scores: np.ndarray, start: int) -> Iterator[ItemRow]:
    for i in range(start, min(start + _ITEM_PART, len(items))):
        keep = items[i] >= 0
        yield ItemRow(i, items[i][keep], scores[i][keep])
