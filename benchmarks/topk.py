"""``topk``: the batch layer's all-users top-K (seen excluded, K=100, f=64) vs implicit's ``recommend``, and vs
the machine's own sgemm rate on the same shapes.

Both paths score the same random factors against the same power-law "seen" matrix, with the same threads.
implicit runs as its docs ask (BLAS limited to one thread, its own ``num_threads`` pool) on all users or a
sample (``users/s`` is a per-user rate). The sgemm reference is a plain numpy float32 matmul of our blocks.
The three take turns block by block, and each block counts with its best of ``--repeats`` times, so load from
other processes on a shared machine hits them alike.

Example
-------
``python -m benchmarks topk --scale small`` ; ``--device cuda`` scores on the GPU with torch.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from batch_layer.candidates import ExactSearcher, iter_candidates
from batch_layer.train.device import resolve_threads
from benchmarks.common import Goal, Result, Scale
from benchmarks.ray_topk import run_ray
from benchmarks.topk_data import FACTORS, SIZES, K, synthetic
from lambdarec.model.exclusions import Exclusions, TileMask
from lambdarec.model.scoring import (
    CHUNK_ROWS,
    HOT_TILE_ELEMENTS,
    guessed_topk_scores,
    redo_short,
    tile_columns,
)
from lambdarec.model.topk import Workspace
from lambdarec.model.topk_threshold import ThresholdGuess, ThresholdSelection

# goals on 2 cores: users/s vs implicit, effective GFLOP/s vs sgemm, selection's share of a user's CPU time (%)
GOAL_VS_IMPLICIT, GOAL_VS_SGEMM, GOAL_SELECT_PCT = 3.0, 0.5, 25.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where our path scores")
    parser.add_argument("--threads", type=int, default=0, help="threads for both paths (0: every core)")
    parser.add_argument("--block", type=int, default=4096, help="users per block (batch.user_block)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per block; the best counts")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: the Ray engine vs local")


def _blas_note() -> str:
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")]
    info = blas[0] if blas else {}
    env = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
    return f"BLAS {info.get('internal_api', '?')} {info.get('version', '?')} kernel {info.get('architecture', '?')}" + (
        f" {env}" if env else ""
    )


def _ours(
    user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix, threads: int, device: str
) -> Callable[[int, int], None]:
    """Our path over users ``start:stop``: exactly what the batch job runs for one block."""
    if device == "cuda":
        from batch_layer.model_index import TorchSearcher

        searcher = TorchSearcher(item_factors)
    else:
        searcher = ExactSearcher(item_factors, threads)

    def run(start: int, stop: int) -> None:
        rows = seen[start:stop]
        for _ in iter_candidates(user_factors[start:stop], item_factors, rows, K, stop - start, searcher=searcher):
            pass

    return run


def _implicit(
    user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix, threads: int
) -> Callable[[int, int], None]:
    """implicit's batched ``recommend`` over users ``start:stop``, configured as its docs ask."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, user_api="blas"):  # implicit warns without it
        model = AlternatingLeastSquares(factors=FACTORS, num_threads=threads)
    model.user_factors, model.item_factors = user_factors, item_factors

    def run(start: int, stop: int) -> None:
        ids = np.arange(start, stop)
        rows = seen[ids]
        with threadpool_limits(1, user_api="blas"):
            model.recommend(ids, rows, N=K, filter_already_liked_items=True)

    return run


def _sgemm(user_factors: np.ndarray, item_factors: np.ndarray, device: str) -> Callable[[int, int], None]:
    """The plain float32 matmul of users ``start:stop`` against all items, BLAS on every core."""
    if device == "cuda":
        import torch

        y = torch.as_tensor(item_factors, device="cuda")

        def run_gpu(start: int, stop: int) -> None:
            torch.as_tensor(user_factors[start:stop], device="cuda") @ y.T
            torch.cuda.synchronize()

        return run_gpu
    items_t = np.ascontiguousarray(item_factors.T)
    rows = max(1, (1 << 28) // len(item_factors))  # output of at most 1 GiB per call
    out = np.empty((rows, len(item_factors)), np.float32)

    def run(start: int, stop: int) -> None:
        for first in range(start, stop, rows):
            last = min(first + rows, stop)
            np.matmul(user_factors[first:last], items_t, out=out[: last - first])

    return run


def _per_block_best(
    runs: dict[str, tuple[Callable[[int, int], None], int]], block: int, repeats: int
) -> dict[str, float]:
    """Sum over blocks of each path's best time for that block, the paths taking turns block by block.

    Load from other processes on a shared machine then hits every path alike, and a block disturbed in one
    repeat counts with its undisturbed time. ``runs`` maps a name to (function, users to time).
    """
    total = max(users for _, users in runs.values())
    best: dict[str, dict[int, float]] = {name: {} for name in runs}
    for _ in range(repeats):
        for start in range(0, total, block):
            for name, (fn, users) in runs.items():
                if start < users:
                    stop = min(start + block, users)
                    t0 = time.perf_counter()
                    fn(start, stop)
                    spent = time.perf_counter() - t0
                    best[name][start] = min(best[name].get(start, spent), spent)
    return {name: sum(times.values()) for name, times in best.items()}


def _profile(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix) -> tuple[str, float]:
    """Single-thread CPU microseconds per user in each stage of our path (best of 3 per chunk), over a few chunks,
    and the selection's share of them.

    The stages of :func:`lambdarec.model.scoring.guessed_topk_scores` once its guess has learnt: the sgemm per
    tile, the masking of seen items, and the selection (threshold, survivors, their sort, and the rows redone).
    """
    items_t = np.ascontiguousarray(item_factors.T)
    n_items = len(item_factors)
    work = Workspace()
    guess = ThresholdGuess(item_factors, K)
    stages = {"matmul": 0.0, "mask": 0.0, "select": 0.0}
    clock = time.thread_time  # CPU time of this thread: other processes on a shared machine count less
    width = tile_columns(n_items, CHUNK_ROWS, HOT_TILE_ELEMENTS)
    with threadpool_limits(1, user_api="blas"):
        warm = slice(0, 2 * CHUNK_ROWS)
        guessed_topk_scores(user_factors[warm], items_t, K, Exclusions.of(seen[warm], 2 * CHUNK_ROWS, n_items),
                            workspace=work, guess=guess)  # fmt: skip
        users = min(len(user_factors), 18 * CHUNK_ROWS) - 2 * CHUNK_ROWS
        redo: list[int] = []
        for start in range(2 * CHUNK_ROWS, 2 * CHUNK_ROWS + users, CHUNK_ROWS):
            rows = user_factors[start : start + CHUNK_ROWS]
            excl = Exclusions(seen.indptr[start : start + len(rows) + 1], seen.indices)
            best = dict.fromkeys(stages, float("inf"))
            for repeat in range(3):
                spent = dict.fromkeys(stages, 0.0)
                t0 = clock()
                moments = guess.moments(rows)
                thresholds = guess.thresholds(rows, moments)
                select = ThresholdSelection(thresholds, n_items, K, work, shifted=True)
                shifted = guess.shifted_queries(rows, thresholds)
                mask = TileMask(excl.indptr, excl.indices)
                spent["select"] += clock() - t0
                for first in range(0, n_items, width):
                    t0 = clock()
                    tile = guess.shifted_items_t[:, first : first + width]
                    scores = np.matmul(shifted, tile, out=work.array("s", (len(rows), tile.shape[1]), np.float32))
                    t1 = clock()
                    mask.apply(scores, first)
                    t2 = clock()
                    select.add(scores, first)
                    spent["matmul"] += t1 - t0
                    spent["mask"] += t2 - t1
                    spent["select"] += clock() - t2
                t3 = clock()
                _, val, short = select.result()
                if repeat == 0:  # each row learnt once, as in a run
                    guess.learn(rows, np.where(short, np.nan, val[:, K - 1]), moments)
                spent["select"] += clock() - t3
                for name in stages:
                    best[name] = min(best[name], spent[name])
            for name in stages:
                stages[name] += best[name]
            redo.extend(start + np.flatnonzero(short))
        # Rows the guess was too high for are selected again together, as ExactSearcher does once per block.
        t0 = clock()
        again = np.asarray(redo, dtype=np.int64)
        excl = Exclusions(seen.indptr, seen.indices).take(again)
        idx, val = np.empty((len(again), K), np.int32), np.empty((len(again), K), np.float32)
        full = redo_short(np.ones(len(again), bool), user_factors[again], items_t, K, excl, idx, val,
                          workspace=work, guess=guess)  # fmt: skip
        stages["select"] += clock() - t0
    total = sum(stages.values())
    text = (
        "1-thread CPU us/user: "
        + ", ".join(f"{k} {v / users * 1e6:.1f}" for k, v in stages.items())
        + f"; selection {stages['select'] / total:.0%} of the total; {len(redo)} of {users} redone"
        + f" ({full} of them over full rows)"
    )
    return text, stages["select"] / total


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    if getattr(args, "engine", "local") == "ray":
        yield from run_ray(scale, args)
        return
    n_users, n_items, ours_users, ref_users = SIZES[scale]
    threads = resolve_threads(getattr(args, "threads", 0))
    block = getattr(args, "block", 4096)
    device = getattr(args, "device", "cpu")
    user_factors, item_factors, seen = synthetic(n_users, n_items)
    shape = f"{n_users}x{n_items} f={FACTORS} K={K}, seen nnz {seen.nnz}, {threads} threads, block {block}"

    gemm_users = min(ours_users, 4 * block)  # a few blocks are enough for a rate
    runs = {
        "ours": (_ours(user_factors, item_factors, seen, threads, device), ours_users),
        "implicit": (_implicit(user_factors, item_factors, seen, threads), ref_users),
        "sgemm": (_sgemm(user_factors, item_factors, device), gemm_users),
    }
    runs["sgemm"][0](0, min(block, gemm_users))  # warm-up: page faults of the output, GPU context
    if device == "cuda":
        runs["ours"][0](0, min(block, ours_users))
    best = _per_block_best(runs, block, getattr(args, "repeats", 3))
    ours_s, ref_s, gemm_s = best["ours"], best["implicit"], best["sgemm"]
    timed = f"ours on {ours_users} users ({ours_s:.2f} s on {device}), implicit on {ref_users} ({ref_s:.2f} s)"
    yield Result(
        bench="topk",
        metric="users/s vs implicit recommend",
        ours=ours_users / ours_s,
        reference=ref_users / ref_s,
        unit="users/s",
        scale=scale,
        note=f"{shape}; {timed}; the goal is for 2 cores",
        goal=Goal(ratio=GOAL_VS_IMPLICIT),
    )
    flops = 2.0 * n_items * FACTORS
    note = f"{_blas_note()}; sgemm {gemm_users}x{n_items}x{FACTORS}"
    profile, share = _profile(user_factors, item_factors, seen) if device == "cpu" else ("", None)
    yield Result(
        bench="topk",
        metric="effective GFLOP/s vs sgemm",
        ours=flops * ours_users / ours_s / 1e9,
        reference=flops * gemm_users / gemm_s / 1e9,
        unit="GFLOP/s",
        scale=scale,
        note=f"{note}; {profile}" if profile else note,
        goal=Goal(ratio=GOAL_VS_SGEMM),
    )
    if share is not None:
        yield Result(
            bench="topk",
            metric="selection share of per-user CPU time",
            ours=100 * share,
            reference=GOAL_SELECT_PCT,
            unit="%",
            scale=scale,
            higher_is_better=False,
            note=f"reference is the goal; {profile}",
            goal=Goal(at_most=GOAL_SELECT_PCT),
        )
