"""``topk --engine ray``: the Ray engine's all-users top-K against the local engine, on the same factors, seen
matrix and K (100, f=64), on this machine.

The local engine is what ``batch.engine = "local"`` runs: :func:`batch_layer.candidates.iter_candidates` with an
exact searcher on every core. The Ray engine is the job's own stage (:func:`batch_layer.ray_engine.map_user_blocks`
over a local Ray) with 1 and with 2 actors of 1 CPU each, its actors the job's writers without the store writes
(:class:`batch_layer.ray_actors.UserBlockScorer`): the figure is the scoring's, the store's write rate is
``python -m benchmarks publish``'s. Each actor also reports the time it spent scoring, which splits a run into
the steady rate per actor (users / scoring time) and the fixed costs (the rest of the wall time: starting the
actors, fetching the model, scheduling); a cluster adds the steady rate per actor until the store caps it.

Runs take turns (local, then each Ray run) within each repeat, and each counts with its best time, so load from
other processes on a shared machine hits them alike.

Example
-------
``python -m benchmarks topk --engine ray --scale small``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from batch_layer.candidates import ExactSearcher, iter_candidates
from batch_layer.ray_actors import UserBlockScorer
from batch_layer.ray_cluster import ray_session
from batch_layer.ray_engine import map_user_blocks, ray_data_quiet, share_model
from batch_layer.train.device import resolve_threads
from benchmarks.common import Result, Scale, best_of
from benchmarks.topk_data import SIZES, K, synthetic
from lambdarec.settings import BatchSettings

ACTORS = (1, 2)
BLOCKS_PER_ACTOR = 4  # Ray blocks per actor in a run: fewer leave an actor idle at the end


class TimedScorer(UserBlockScorer):
    """The job's scorer, also reporting the seconds each call spent scoring (``busy_s``)."""

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = super().__call__(block)
        return {**out, "busy_s": np.array([time.perf_counter() - t0])}


def _on_ray(shared: dict[str, Any], users: int, batch: BatchSettings, actors: int) -> tuple[float, float]:
    """One Ray run over every user: (wall seconds, seconds the actors spent scoring, summed)."""
    t0 = time.perf_counter()
    rows = list(map_user_blocks(TimedScorer, shared, {}, users, batch, actors).iter_rows())
    wall = time.perf_counter() - t0
    scored = sum(int(r["rows"]) for r in rows)
    if scored != users:
        raise RuntimeError(f"the Ray run scored {scored} users; expected {users}")
    return wall, sum(float(r["busy_s"]) for r in rows)


def run_ray(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    """Yield one :class:`Result` per actor count: Ray engine users/s (ours) vs the local engine (reference)."""
    if getattr(args, "device", "cpu") != "cpu":
        raise SystemExit("topk --engine ray measures CPU actors; drop --device cuda (ray_gpus_per_actor is untimed)")
    n_users, n_items, users, _ = SIZES[scale]
    threads = resolve_threads(getattr(args, "threads", 0))
    repeats = max(1, getattr(args, "repeats", 3))
    block = getattr(args, "block", 4096)
    user_factors, item_factors, seen = synthetic(n_users, n_items)
    user_factors, seen = user_factors[:users], seen[:users]
    ray_block = max(256, -(-users // (BLOCKS_PER_ACTOR * max(ACTORS))))
    batch = BatchSettings(
        top_k=K,
        user_block=min(block, ray_block),
        device="cpu",
        ray={
            "block_users": ray_block,
            "cpus_per_actor": 1,
            "max_restarts": 0,
            "local_cpus": threads,
            "object_store_mb": max(100, 3 * (user_factors.nbytes + item_factors.nbytes + seen.data.nbytes * 3) >> 20),
        },
    )
    searcher = ExactSearcher(item_factors, threads)

    def local() -> None:
        for _ in iter_candidates(user_factors, item_factors, seen, K, block, searcher=searcher):
            pass

    started = time.perf_counter()
    with ray_session(batch), ray_data_quiet():
        start_s = time.perf_counter() - started
        t0 = time.perf_counter()
        shared = share_model(user_factors, item_factors, seen, np.arange(users).astype(str))
        put_s = time.perf_counter() - t0

        local_s = float("inf")
        best: dict[int, tuple[float, float]] = dict.fromkeys(ACTORS, (float("inf"), 0.0))
        for _ in range(repeats):
            local_s = min(local_s, best_of(local, 1))
            for actors in ACTORS:
                best[actors] = min(best[actors], _on_ray(shared, users, batch, actors))

    local_rate = users / local_s
    shape = f"{users}x{n_items} f={user_factors.shape[1]} K={K}, seen nnz {seen.nnz}"
    for actors in ACTORS:
        wall, busy = best[actors]
        fixed = wall - busy / actors
        yield Result(
            bench="topk",
            metric=f"users/s ray {actors} actor{'s' if actors > 1 else ''} vs local",
            ours=users / wall,
            reference=local_rate,
            unit="users/s",
            scale=scale,
            note=f"{shape}; local on {threads} threads {local_s:.2f} s; ray {actors}x1 CPU {wall:.2f} s: "
            f"steady {users / busy:.0f} users/s per actor, fixed {fixed:.2f} s (actor start, model fetch, "
            f"scheduling); {ray_block}-user Ray blocks; Ray start {start_s:.1f} s and model put {put_s:.2f} s "
            "once per job",
        )
