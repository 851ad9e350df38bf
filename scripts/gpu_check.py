"""Check the batch layer's GPU paths on a machine with a CUDA device, and print their timings.

Run from the repository root with the project's environment (torch installed)::

    python scripts/gpu_check.py            # about a minute on one modern GPU
    python scripts/gpu_check.py --quick    # smaller shapes

Checks, each printed as one JSON line (``"ok": true/false``); the exit status is the number of failed checks:

1. ``make_searcher`` with ``device = "auto"`` picks the torch GPU searcher;
2. torch CUDA top-K (seen excluded) equals the CPU exact top-K on random factors, and its throughput;
3. the torch trainer (BPR and sampled softmax) runs on CUDA, is seeded, and learns planted clusters;
4. FAISS GPU IVF, when FAISS can search on this GPU (skipped with the reason otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batch_layer.candidates import ExactSearcher, candidate_recall, iter_candidates, make_searcher
from batch_layer.quality_metrics import evaluate_gate
from batch_layer.train import train
from lambdarec.model.scoring import Exclusions
from lambdarec.settings import BatchSettings

FAILED: list[str] = []


def report(check: str, ok: bool, **figures: object) -> None:
    print(json.dumps({"check": check, "ok": bool(ok), **figures}), flush=True)
    if not ok:
        FAILED.append(check)


def random_case(users: int, items: int, f: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((users, f), dtype=np.float32) * 0.1
    y = rng.standard_normal((items, f), dtype=np.float32) * 0.1
    counts = np.minimum((rng.pareto(1.2, users) * 4 + 1).astype(np.int64), items // 10)
    rows = np.repeat(np.arange(users), counts)
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, rng.integers(0, items, rows.size))), (users, items))
    seen.sum_duplicates()
    return u, y, seen


def planted(users: int = 4000, clusters: int = 20, per_cluster: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items = clusters * per_cluster
    rows, cols, hold_rows, hold_cols = [], [], [], []
    for user in range(users):
        picks = (user % clusters) * per_cluster + rng.choice(per_cluster, 15, replace=False)
        rows += [user] * 12
        cols += list(picks[:12])
        hold_rows += [user] * 3
        hold_cols += list(picks[12:])
    ones = np.ones(len(cols), np.float32)
    train_m = sp.csr_matrix((ones, (rows, cols)), (users, n_items))
    holdout = sp.csr_matrix((np.ones(len(hold_cols), np.float32), (hold_rows, hold_cols)), (users, n_items))
    return train_m, holdout


def check_auto_device() -> None:
    searcher = make_searcher(np.eye(4, dtype=np.float32), BatchSettings(device="auto"))
    report("auto_device_picks_gpu", type(searcher).__name__ == "TorchSearcher", searcher=type(searcher).__name__)


def check_topk(users: int, items: int, sample: int) -> None:
    import torch

    from batch_layer.model_index import TorchSearcher

    u, y, seen = random_case(users, items)
    gpu = TorchSearcher(y)
    # users spread over every block and device step of the timed run below, whose results are the ones checked
    ids = np.sort(np.random.default_rng(1).choice(users, sample, replace=False))
    rows = seen[ids]
    excl = Exclusions(rows.indptr, rows.indices)
    cpu_idx, cpu_val = ExactSearcher(y).search(u[ids], excl, 100)
    gpu_idx = np.empty_like(cpu_idx)
    gpu_val = np.empty_like(cpu_val)
    t0 = time.perf_counter()
    for block in iter_candidates(u, y, seen, 100, 16384, searcher=gpu):
        hit = np.isin(ids, block.users)
        where = np.searchsorted(block.users, ids[hit])
        gpu_idx[hit], gpu_val[hit] = block.items[where], block.scores[where]
    torch.cuda.synchronize()
    gpu_s = time.perf_counter() - t0
    same_items = float((cpu_idx == gpu_idx).mean())
    max_diff = float(np.abs(cpu_val - gpu_val).max())
    flat = np.repeat(ids, 100)
    no_seen = not seen[flat[gpu_idx.ravel() >= 0], gpu_idx.ravel()[gpu_idx.ravel() >= 0]].any()
    recall = candidate_recall(gpu, u, y, seen, 100, sample=sample)
    t0 = time.perf_counter()
    ExactSearcher(y).search(u[ids], excl, 100)
    cpu_s = time.perf_counter() - t0
    # the default selection on this GPU: the Triton kernels where they run (a fallback is logged and fails here)
    from batch_layer import gpu_select

    selection = "triton" if gpu._fused_ran else "torch"
    triton_expected = gpu_select.available() and items >= 64 * 100
    report(
        "torch_cuda_topk_equals_cpu_exact",
        same_items > 0.999
        and max_diff < 1e-4
        and no_seen
        and recall > 0.999
        and (selection == "triton" or not triton_expected),
        selection=selection,
        shape=f"{users}x{items} f=64 K=100",
        same_items=same_items,
        max_score_diff=max_diff,
        recall=recall,
        gpu_users_per_s=users / gpu_s,
        gpu_s=gpu_s,
        cpu_users_per_s=sample / cpu_s,
        gpu_name=torch.cuda.get_device_name(0),
    )


def check_torch_trainer(users: int) -> None:
    train_m, holdout = planted(users)
    for loss in ("bpr", "softmax"):
        settings = BatchSettings(
            train={"model": "torch", "factors": 32, "iterations": 20, "regularization": 1e-4},
            torch={"loss": loss, "batch_size": 2048},
            device="cuda",
            seed=3,
        )
        t0 = time.perf_counter()
        a = train(train_m, settings, show_progress=False)
        seconds = time.perf_counter() - t0
        b = train(train_m, settings, show_progress=False)
        gate = evaluate_gate(a.user_factors, a.item_factors, train_m, holdout, 10)
        report(
            f"torch_trainer_cuda_{loss}",
            gate.model.recall > gate.popularity.recall + 0.2 and np.isfinite(a.item_factors).all(),
            seconds=seconds,
            deterministic=bool(np.array_equal(a.item_factors, b.item_factors)),
            recall=gate.model.recall,
            popularity_recall=gate.popularity.recall,
            interactions=int(train_m.nnz),
        )


def check_faiss_gpu(items: int) -> None:
    try:
        import faiss
    except ImportError as exc:  # e.g. faiss-gpu-cu12 without its CUDA 12 libraries
        report("faiss_gpu_ivf", False, reason=f"faiss does not import: {exc}")
        return
    from batch_layer.model_index import faiss_gpu_problem

    problem = faiss_gpu_problem()  # no GPU build, or one without code for this GPU (tried in a child process)
    if problem is not None:
        print(json.dumps({"check": "faiss_gpu_ivf", "skipped": problem, "faiss": faiss.__version__}), flush=True)
        return
    u, y, seen = random_case(20_000, items)
    searcher = make_searcher(y, BatchSettings(index={"kind": "ivf", "ivf_nprobe": 64}, device="cuda"))
    recall = candidate_recall(searcher, u, y, seen, 100, sample=1000)
    report("faiss_gpu_ivf", recall > 0.5, recall=recall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"check": "cuda", "ok": False, "reason": "torch sees no CUDA device"}))
        return 1
    torch.set_float32_matmul_precision("highest")  # no TF32: the GPU must agree with the CPU exactly
    users, items = (50_000, 20_000) if args.quick else (500_000, 100_000)
    check_auto_device()
    check_topk(users, items, sample=2000)
    check_torch_trainer(4000 if args.quick else 40_000)
    check_faiss_gpu(items)
    print(json.dumps({"failed": FAILED}))
    return len(FAILED)


if __name__ == "__main__":
    sys.exit(main())
