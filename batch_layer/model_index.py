"""Item indices for candidate search beyond the exact CPU one: exact on a CUDA GPU (torch), approximate (FAISS).

Both implement :class:`batch_layer.candidates.Searcher`; :func:`batch_layer.candidates.make_searcher` picks one.
torch and FAISS are imported only when such a searcher is built.

Example
-------
>>> from lambdarec.settings import BatchSettings
>>> s = FaissSearcher(np.eye(4, dtype=np.float32), BatchSettings(index={"kind": "hnsw"}))
>>> s.search(np.array([[0, 0, 1, 0]], np.float32), None, 1)[0].tolist()
[[2]]
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from typing import Any

import numpy as np

from batch_layer.torch_search import TorchSearcher
from batch_layer.train.device import resolve_threads
from lambdarec.logs import get_logger
from lambdarec.model.scoring import Exclusions
from lambdarec.settings import BatchSettings

__all__ = ["FaissSearcher", "TorchSearcher", "faiss_gpu_problem", "faiss_gpus", "torch_cuda_ready"]

log = get_logger(__name__)


def torch_cuda_ready() -> bool:
    """True when torch is installed (CUDA itself is probed by :func:`batch_layer.train.device.cuda_available`)."""
    return importlib.util.find_spec("torch") is not None


def faiss_gpus() -> int:
    """CUDA devices this FAISS build can use: 0 for a CPU-only build (``faiss-cpu``) or one that cannot search on
    this machine's GPU (:func:`faiss_gpu_problem`)."""
    import faiss

    return 0 if faiss_gpu_problem() else faiss.get_num_gpus()


# A search on the GPU in a child process: a FAISS build without code for this GPU aborts the process that tries.
_FAISS_GPU_PROBE = """
import numpy as np, faiss
index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), 4)
index.add(np.eye(4, dtype=np.float32))
assert index.search(np.eye(4, dtype=np.float32), 1)[1].ravel().tolist() == [0, 1, 2, 3], "wrong neighbours"
"""


@functools.cache
def faiss_gpu_problem() -> str | None:
    """Why FAISS cannot search on this machine's GPU, or None when it can.

    Beyond a CPU-only build or no device, a tiny search runs first in a child process, once per process (about a
    second, and a CUDA context of its own while it runs): FAISS GPU wheels carry code for some GPU generations only
    (``faiss-gpu-cu12`` 1.14 for compute capability 7.0 and 8.0, none for Hopper), and a search on any other GPU
    aborts the process. The answer is kept for the life of the process.
    """
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return "this FAISS build has no GPU support (faiss-cpu); install the gpu extra (lambdarec[gpu])"
    if faiss.get_num_gpus() == 0:
        return "this FAISS build sees no CUDA device"
    try:
        run = subprocess.run(
            [sys.executable, "-c", _FAISS_GPU_PROBE], capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        return "a test search on the GPU did not finish in 120 s; use batch.index.kind = 'exact' on this GPU"
    if run.returncode == 0:
        return None
    lines = [line.strip() for line in run.stderr.splitlines() if line.strip()]
    detail = next((line for line in reversed(lines) if "rror" in line), lines[-1] if lines else "")
    if "no kernel image" in detail:
        hint = "FAISS GPU wheels carry code for some GPU generations only, so "
    elif "wrong neighbours" in detail:
        hint = "its GPU search gave wrong results, so "
    else:
        hint = "e.g. FAISS's CUDA libraries missing, the GPU out of memory or in exclusive use; "
    return (
        f"this FAISS build cannot search on this GPU (a test search exited with status {run.returncode}: "
        f"{detail[-300:]}); {hint}use batch.index.kind = 'exact' (the torch searcher) on this GPU"
    )


def _faiss_on_cpu(settings: BatchSettings) -> bool:
    """Whether a GPU-wanting FAISS index must stay on the CPU: raises when ``batch.device = 'cuda'`` asked for it
    explicitly (a GPU request that cannot be honoured says so), warns for ``'auto'``."""
    if settings.index.kind == "hnsw":
        reason = "FAISS has no GPU HNSW index; use batch.index.kind = 'ivf' or 'exact' on a GPU"
    elif (problem := faiss_gpu_problem()) is not None:
        reason = problem
    else:
        return False
    if settings.device == "cuda":
        raise RuntimeError(f"batch.device = 'cuda' cannot be honoured: {reason}, or set batch.device = 'cpu'")
    log.warning("candidates.cpu_fallback", reason=reason, index=settings.index.kind)
    return True


def _seen_flat(seen: Exclusions, rows: int, n_items: int) -> np.ndarray:
    """Row-major flat positions ``row * n_items + item`` of every excluded (row, item), sorted."""
    start, stop = int(seen.indptr[0]), int(seen.indptr[-1])
    owner = np.repeat(np.arange(rows, dtype=np.int64), np.diff(seen.indptr))
    return np.sort(owner * n_items + seen.indices[start:stop].astype(np.int64))


class FaissSearcher:
    """Approximate inner-product top-K with a FAISS ``IndexIVFFlat`` or ``IndexHNSWFlat``.

    Seen items are removed after the search: users are grouped by their seen count rounded up to a power of
    two, and each group asks for ``k`` plus that many items, so heavy users do not slow everyone down.
    """

    def __init__(self, item_factors: np.ndarray, settings: BatchSettings, *, use_gpu: bool = False) -> None:
        import faiss

        items = np.ascontiguousarray(item_factors, dtype=np.float32)
        n_items, dim = items.shape
        if use_gpu and _faiss_on_cpu(settings):
            use_gpu = False
        faiss.omp_set_num_threads(resolve_threads(settings.threads))
        self.kind = settings.index.kind
        self.n_items = n_items
        index: Any
        if settings.index.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.index.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = settings.index.hnsw_ef_construction
            index.add(items)
            index.hnsw.efSearch = settings.index.hnsw_ef_search
        elif settings.index.kind == "ivf":
            nlist = settings.index.ivf_nlist or max(1, int(4 * np.sqrt(n_items)))
            nlist = min(nlist, n_items)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = settings.seed
            index.train(items)
            index.add(items)
            index.nprobe = min(settings.index.ivf_nprobe, nlist)
            if use_gpu:
                self._gpu_resources = faiss.StandardGpuResources()
                index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        else:
            raise ValueError(f"FaissSearcher needs batch.index.kind = 'ivf' or 'hnsw'; got {settings.index.kind!r}")
        self.index = index
        self._quantizer = None if settings.index.kind == "hnsw" else quantizer  # keep it alive with the index

    def search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.ascontiguousarray(user_vectors, dtype=np.float32)
        n_users = len(users)
        out_items = np.full((n_users, k), -1, dtype=np.int32)
        out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        counts = np.zeros(n_users, np.int64) if seen is None else np.diff(seen.indptr)
        flat = None if seen is None else _seen_flat(seen, n_users, self.n_items)
        extra = np.where(counts > 0, 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64), 0)
        for pad in np.unique(extra):
            rows = np.flatnonzero(extra == pad)
            ask = int(min(self.n_items, k + pad))
            dist, ids = self.index.search(users[rows], ask)
            drop = ids < 0
            if flat is not None and flat.size:
                key = rows[:, None] * self.n_items + np.maximum(ids, 0)
                pos = np.minimum(np.searchsorted(flat, key), flat.size - 1)
                drop |= flat[pos] == key
            # FAISS returns best first; a stable sort on "dropped" keeps that order among the kept.
            keep = np.argsort(drop, axis=1, kind="stable")[:, : min(k, ask)]
            kept_ids = np.take_along_axis(ids, keep, 1)
            kept_drop = np.take_along_axis(drop, keep, 1)
            width = keep.shape[1]
            out_items[rows, :width] = np.where(kept_drop, -1, kept_ids).astype(np.int32)
            out_scores[rows, :width] = np.where(kept_drop, -np.inf, np.take_along_axis(dist, keep, 1))
        return out_items, out_scores
