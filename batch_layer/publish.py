"""Write a trained model into the store as a new snapshot version, streamed per user block, then publish it.

Until ``publish`` flips the pointer, the version is ``writing`` and no reader sees it; ``publish`` validates
row counts and array checksums first, so a snapshot missing a block is refused rather than served.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from batch_layer.candidates import Searcher, candidate_recall, iter_candidates, make_searcher
from batch_layer.matrix import Interactions
from batch_layer.neighbours import item_neighbours
from batch_layer.popularity import Popularity
from batch_layer.ray_cluster import check_ray_settings
from batch_layer.ray_engine import write_users_ray
from batch_layer.rows import ITEM_PART, item_rows, user_rows
from lambdarec.logs import get_logger
from lambdarec.model import snapshot as names
from lambdarec.model.factors import Factors, gram
from lambdarec.settings import BatchSettings, StoreSettings
from lambdarec.store import OnlineStore

log = get_logger(__name__)


def write_snapshot(
    store: OnlineStore,
    data: Interactions,
    factors: Factors,
    pop: Popularity,
    manifest: dict[str, Any],
    batch: BatchSettings,
    *,
    progress: bool = True,
    store_settings: StoreSettings | None = None,
) -> tuple[str, dict[str, float]]:
    """Begin a version, write arrays, user rows and item rows, validate and publish. Returns (version, timings).

    With ``batch.engine = "ray"`` the user rows are scored and written by Ray actors, each opening its own
    store from ``store_settings`` (required then); everything else runs here, as with the local engine.
    """
    if batch.engine == "ray":
        check_ray_settings(store_settings, batch)  # before begin_snapshot: a bad setting leaves no version behind
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
        names.XTX: gram(factors.user_factors),  # brand-new items' vectors (lambdarec.model.fresh_items)
    }
    for name, array in arrays.items():
        store.write_array(version, name, np.asarray(array))
    manifest["arrays"] = list(arrays)
    timings["write"] += time.perf_counter() - t0

    searcher = make_searcher(factors.item_factors, batch)
    if batch.index.kind != "exact":
        t0 = time.perf_counter()
        recall = candidate_recall(
            searcher,
            factors.user_factors,
            factors.item_factors,
            data.matrix,
            batch.top_k,
            batch.index.recall_sample,
            seed=batch.seed,
            threads=batch.threads,
        )
        manifest["index"] = {
            "kind": batch.index.kind,
            f"recall@{batch.top_k}": round(recall, 4),
            "sample_users": min(batch.index.recall_sample, len(data.user_ids)),
        }
        timings["index_recall"] = time.perf_counter() - t0
    else:
        manifest["index"] = {"kind": "exact"}

    if batch.engine == "ray":
        # Scoring and writing overlap in the actors, so the whole stage counts as candidates.
        t0 = time.perf_counter()
        write_users_ray(store_settings, version, data, factors, batch, searcher=searcher, progress=progress)
        timings["candidates"] += time.perf_counter() - t0
    else:
        _write_user_blocks(store, version, data, factors, batch, searcher, timings, progress)

    t0 = time.perf_counter()
    neigh = item_neighbours(factors.item_factors, batch.neighbours, block=batch.user_block, threads=batch.threads)
    timings["neighbours"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(data.item_ids), ITEM_PART):
        store.write_items(version, item_rows(neigh.items, neigh.scores, start), part=f"items-{start}")
    timings["write"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    store.publish(version, {**manifest, "version": version, "published": True})
    timings["publish"] = time.perf_counter() - t0
    return version, timings


def _write_user_blocks(
    store: OnlineStore,
    version: str,
    data: Interactions,
    factors: Factors,
    batch: BatchSettings,
    searcher: Searcher,
    timings: dict[str, float],
    progress: bool,
) -> None:
    """The local engine: score user blocks here and write each as one store part."""
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
        store.write_users(version, user_rows(data.user_ids, data.matrix, block), part=f"users-{int(block.users[0])}")
        timings["write"] += time.perf_counter() - t0
        bar.update(len(block.users))
    bar.close()
