"""``gpu``: the batch layer's GPU paths on one CUDA device at the large scale, against the device's FP32 peak.

* **peak**: the device's measured FP32 matmul rate (TF32 off), and its datasheet peak where the name is known;
* **top-K**: FAISS GPU exact inner-product search (``GpuIndexFlatIP``, K = 100 plus the seen-item padding of
  :class:`batch_layer.model_index.FaissSearcher`) and the batch layer's own exact GPU searcher
  (:class:`batch_layer.model_index.TorchSearcher`: the Triton selector of :mod:`batch_layer.gpu_select` where
  it runs) over every user, as ``2 * users * items * f`` FLOP/s against the peak (goal >= 50%); beside them the
  same searcher's torch selection (``torch_two_stage``: matmul, seen masked, two-stage ``topk``), with one
  ``topk`` over every item (``torch_one_pass``, the selection before this round), and the matrix product alone;
* **training**: one epoch of torch MF (:func:`batch_layer.train.train`, ``model = "torch"``, sampled softmax)
  as ``6 * pairs * f * (1 + negatives)`` FLOP/s against the peak, and seconds per epoch.

A GPU request that cannot be honoured is refused, never run on the CPU: without a CUDA driver and device, torch
with CUDA, or (unless ``--searchers torch``) a FAISS build with GPU support (the ``gpu`` extra), the benchmark
prints what is missing and exits with :data:`EXIT_NO_GPU`. It prints absolute times too (BENCHMARKS.md: GPU variants).

Example
-------
``python -m benchmarks gpu --scale large`` (1M users x 100k items, ~50M interactions, f = 64); ``--scale small``
(100k x 20k) for a quick check.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from benchmarks.common import Goal, Result, Scale
from benchmarks.topk_data import FACTORS, K, synthetic

EXIT_NO_GPU = 4
GOAL_TOPK_SHARE = 0.5  # each GPU top-K searcher: its share of the measured FP32 peak
# FAISS GPU returns at most 2,048 neighbours; K = 100 plus a seen count padded to a power of two stays within it
# up to 1,024 seen items.
FAISS_GPU_MAX_SEEN = 1024
NEGATIVES = 64
# scale -> (users, items, interactions per user on average)
SIZES: dict[str, tuple[int, int, int]] = {
    "small": (100_000, 20_000, 50),
    "medium": (300_000, 50_000, 50),
    "large": (1_000_000, 100_000, 50),
}
# Datasheet FP32 (non-tensor) peaks, TFLOP/s, by a substring of torch's device name; the first match counts.
SPEC_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 67.0),
    ("H100 PCIe", 51.0),
    ("H100", 67.0),
    ("A100", 19.5),
    ("L40S", 91.6),
    ("L4", 30.3),
    ("A10", 31.2),
    ("V100", 15.7),
    ("T4", 8.1),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=1, help="torch MF epochs timed (default 1; 0: no training)")
    parser.add_argument("--batch-size", type=int, default=262_144, help="torch MF mini-batch (batch.torch)")
    parser.add_argument(
        "--searchers", default="faiss,torch", help="top-K searchers timed: faiss, torch or both (default both)"
    )


def missing(searchers: tuple[str, ...] = ("faiss", "torch")) -> list[str]:
    """What this machine lacks for the GPU paths asked for; empty when all is there."""
    import importlib.util

    from batch_layer.model_index import faiss_gpu_problem
    from batch_layer.train.device import cuda_available

    lacks = []
    if not cuda_available():
        lacks.append("no CUDA driver or device (libcuda reports none)")
    if importlib.util.find_spec("torch") is None:
        lacks.append("torch is not installed (the torch extra)")
    else:
        import torch

        if not torch.cuda.is_available():
            lacks.append(f"torch {torch.__version__} sees no CUDA device (no device, or a CPU-only build)")
    if "faiss" in searchers and (problem := faiss_gpu_problem()) is not None:
        lacks.append(
            f"{problem} (the gpu extra installs faiss-gpu-cu12; --searchers torch times the batch layer's own "
            "searcher alone)"
        )
    return lacks


def _sync() -> None:
    import torch

    torch.cuda.synchronize()


def _peak_tflops() -> float:
    """Best measured FP32 matmul rate (TF32 off), TFLOP/s."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    a @ b
    _sync()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync()
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n**3 / best / 1e12


def _faiss_topk(user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix) -> tuple[float, int]:
    """Seconds for the exact top-K with seen items excluded, FAISS on the GPU, and the users it covered.

    FAISS GPU returns at most 2,048 neighbours, so users whose ``K`` plus padded seen count would pass that are
    left out (counted in the note), not searched elsewhere.
    """
    from batch_layer.model_index import FaissSearcher
    from lambdarec.model.scoring import Exclusions
    from lambdarec.settings import BatchSettings

    settings = BatchSettings(device="cuda", index={"kind": "ivf", "ivf_nlist": 1, "ivf_nprobe": 1})
    searcher = FaissSearcher(item_factors, settings, use_gpu=True)  # one list, probed whole: exact
    counts = np.diff(seen.indptr)
    users = np.flatnonzero(counts <= FAISS_GPU_MAX_SEEN)
    block = 65_536
    t0 = time.perf_counter()
    for start in range(0, len(users), block):
        ids = users[start : start + block]
        rows = seen[ids]
        searcher.search(user_factors[ids], Exclusions(rows.indptr, rows.indices), K)
    return time.perf_counter() - t0, len(users)


def _torch_topk(
    user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix, variant: str
) -> tuple[float, str]:
    """Seconds for every user's exact top-K with seen items excluded, the batch layer's GPU searcher: ``torch``
    as configured by default (the Triton selector where it runs), ``torch_two_stage`` (its torch selection),
    ``torch_one_pass`` (one ``topk`` over every item, as before the two-stage selection); and the selection that
    ran (``triton`` or ``torch``: a failed first Triton launch falls back, and the note must say so)."""
    from batch_layer.candidates import iter_candidates
    from batch_layer.model_index import TorchSearcher

    searcher = TorchSearcher(item_factors, fused=None if variant == "torch" else False)
    if variant == "torch_one_pass":
        searcher._chunk = lambda kk: 1  # type: ignore[method-assign]
    seconds = []
    for _ in range(2):  # the first run compiles the kernels for its shapes and grows the caching allocator
        t0 = time.perf_counter()
        for _ in iter_candidates(user_factors, item_factors, seen, K, 65_536, searcher=searcher):
            pass
        _sync()
        seconds.append(time.perf_counter() - t0)
    return seconds[-1], "triton" if searcher._fused_ran else "torch"


def _matmul_alone(user_factors: np.ndarray, item_factors: np.ndarray) -> float:
    """Seconds for the same users x items products in the searcher's steps, with no masking or selection."""
    import torch

    from batch_layer.torch_search import _GPU_STEP_ELEMENTS

    items = torch.as_tensor(item_factors, device="cuda")
    users = torch.as_tensor(user_factors, device="cuda")
    step = max(1, _GPU_STEP_ELEMENTS // len(item_factors))
    users[:step] @ items.T
    _sync()
    t0 = time.perf_counter()
    for start in range(0, len(users), step):
        users[start : start + step] @ items.T
    _sync()
    return time.perf_counter() - t0


def _train_epochs(matrix: sp.csr_matrix, epochs: int, batch_size: int) -> float:
    """Seconds per epoch of torch MF (sampled softmax) on the GPU."""
    from batch_layer.train import train
    from lambdarec.settings import BatchSettings

    settings = BatchSettings(
        device="cuda",
        train={"model": "torch", "factors": FACTORS, "iterations": epochs},
        torch={"loss": "softmax", "negatives": NEGATIVES, "batch_size": batch_size},
    )
    t0 = time.perf_counter()
    train(matrix, settings, show_progress=False)
    return (time.perf_counter() - t0) / epochs


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    searchers = tuple(name.strip() for name in getattr(args, "searchers", "faiss,torch").split(",") if name.strip())
    unknown = set(searchers) - {"faiss", "torch"}
    if unknown:
        raise SystemExit(f"--searchers takes faiss and/or torch, not {', '.join(sorted(unknown))}")
    lacks = missing(searchers)
    if lacks:
        print("gpu benchmark refused, nothing ran on the CPU instead: " + "; ".join(lacks), file=sys.stderr)
        raise SystemExit(EXIT_NO_GPU)
    import torch

    users, items, per_user = SIZES[scale]
    name = torch.cuda.get_device_name(0)
    measured = _peak_tflops()
    spec = next((tflops for key, tflops in SPEC_TFLOPS if key in name), None)
    peak = f"{name}: measured FP32 matmul {measured:.1f} TFLOP/s" + (f", datasheet {spec} TFLOP/s" if spec else "")
    yield Result("gpu", "fp32_matmul_tflops_vs_datasheet", measured, spec or measured, "TFLOP/s", scale, note=peak)
    # Pareto(1.2) counts average about 3.3 x seen_scale + 1 per user (capped at items / 10).
    user_factors, item_factors, matrix = synthetic(users, items, seed=1, seen_scale=(per_user - 1) / 3.3)
    flop = 2.0 * users * items * FACTORS
    shape = f"{users:,} users x {items:,} items, f={FACTORS}, K={K}, {matrix.nnz:,} seen pairs excluded"
    timed: list[tuple[str, float, int, str]] = []
    if "faiss" in searchers:
        faiss_s, covered = _faiss_topk(user_factors, item_factors, matrix)
        timed.append(("faiss", faiss_s, covered, ""))
    if "torch" in searchers:
        for variant in ("torch", "torch_two_stage", "torch_one_pass"):
            seconds, ran = _torch_topk(user_factors, item_factors, matrix, variant)
            timed.append((variant, seconds, users, f"; selection: {ran}"))
        timed.append(("matmul_alone", _matmul_alone(user_factors, item_factors), users, ""))
    for label, seconds, done, selection in timed:
        left = (
            f" ({users - done:,} users with over 1,024 seen items left out: FAISS GPU's k <= 2,048)"
            if done < users
            else ""
        )
        ceiling = label == "matmul_alone"
        what = "; no masking or selection: the ceiling" if ceiling else ""
        yield Result(
            "gpu", f"topk_{label}_tflops_vs_measured_peak", flop * done / users / seconds / 1e12, measured,
            "TFLOP/s", scale, note=f"{shape}; {seconds:.2f} s, {done / seconds:,.0f} users/s{left}{selection}{what}",
            goal=None if ceiling else Goal(ratio=GOAL_TOPK_SHARE),
        )  # fmt: skip
    epochs = getattr(args, "epochs", 1)
    if epochs < 1:
        return
    batch_size = getattr(args, "batch_size", 262_144)
    seconds = _train_epochs(matrix, epochs, batch_size)
    flop = 6.0 * matrix.nnz * FACTORS * (1 + NEGATIVES)
    yield Result(
        "gpu", "torch_mf_epoch_tflops_vs_measured_peak", flop / seconds / 1e12, measured, "TFLOP/s", scale,
        note=f"{matrix.nnz:,} pairs, softmax with {NEGATIVES} negatives, batch {batch_size:,}: {seconds:.1f} s per "
        f"epoch over {epochs} epoch(s)",
    )  # fmt: skip
