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

import importlib.util
from typing import Any, NamedTuple

import numpy as np

from batch_layer.train.device import resolve_threads
from lambdarec.logs import get_logger
from lambdarec.model.scoring import Exclusions
from lambdarec.settings import BatchSettings

log = get_logger(__name__)

# Score-matrix elements per GPU step (1 GiB of float32), whatever the block size.
_GPU_STEP_ELEMENTS = 1 << 28


def torch_cuda_ready() -> bool:
    """True when torch is installed (CUDA itself is probed by :func:`batch_layer.train.device.cuda_available`)."""
    return importlib.util.find_spec("torch") is not None


def faiss_gpus() -> int:
    """CUDA devices this FAISS build can use: 0 for a CPU-only build (``faiss-cpu``)."""
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def _faiss_on_cpu(settings: BatchSettings) -> bool:
    """Whether a GPU-wanting FAISS index must stay on the CPU: raises when ``batch.device = 'cuda'`` asked for it
    explicitly (a GPU request that cannot be honoured says so), warns for ``'auto'``."""
    if settings.index.kind == "hnsw":
        reason = "FAISS has no GPU HNSW index; use batch.index.kind = 'ivf' or 'exact' on a GPU"
    elif faiss_gpus() == 0:
        reason = "this FAISS build has no GPU support or sees no device; install the gpu extra (lambdarec[gpu])"
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


class TorchSearcher:
    """Exact inner-product top-K on a CUDA device with torch: ``matmul``, seen items masked, then an exact
    two-stage selection.

    Selection: the items are cut into chunks of ``c`` and each user's ``k`` best chunk maxima picked first. The
    ``k``-th of them bounds the ``k``-th best score from below, so the top-``k`` items all lie in those ``k``
    chunks, and one ``topk`` over their ``k * c`` scores (about an eighth of the row) finishes it. That reads the
    score matrix about once instead of the several passes a ``topk`` over every item makes. Small catalogs use
    one ``topk``. Seen items are masked on the device from the block's CSR, and results come back once per call.

    Ties may come back in another order than on the CPU; scores agree to float32 rounding.
    """

    def __init__(self, item_factors: np.ndarray, device: str = "cuda") -> None:
        try:
            import torch
        except ModuleNotFoundError:
            raise RuntimeError(
                "batch.device = 'cuda' scores with torch, which is not installed: install the torch extra "
                "(pip install 'lambdarec[torch]') or set batch.device = 'cpu'"
            ) from None

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("batch.device = 'cuda' but torch sees no CUDA device; use device = 'cpu' or 'auto'")
        self._torch = torch
        self.device = torch.device(device)
        self.n_items = len(item_factors)
        self._items = torch.as_tensor(np.ascontiguousarray(item_factors, dtype=np.float32), device=self.device)

    def _chunk(self, kk: int) -> int:
        """Items per chunk of the two-stage selection (1: a single ``topk``)."""
        return max(1, self.n_items // (_CHUNKS_PER_K * kk))

    def search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        n_users, n_items = len(user_vectors), self.n_items
        kk = min(k, n_items)
        chunk = self._chunk(kk)
        padded = -(-n_items // chunk) * chunk
        items = self._items if padded == n_items else torch.nn.functional.pad(self._items, (0, 0, 0, padded - n_items))
        users = torch.as_tensor(np.ascontiguousarray(user_vectors, dtype=np.float32)).to(self.device)
        top_items = torch.empty((n_users, kk), dtype=torch.int32, device=self.device)
        top_scores = torch.empty((n_users, kk), dtype=torch.float32, device=self.device)
        mask = None if seen is None else _seen_on_device(torch, seen, n_users, self.device)
        step = max(1, _GPU_STEP_ELEMENTS // max(1, padded))
        for start in range(0, n_users, step):
            stop = min(start + step, n_users)
            scores = users[start:stop] @ items.T
            if padded > n_items:
                scores[:, n_items:] = float("-inf")
            if mask is not None:
                lo, hi = int(mask.offsets[start]), int(mask.offsets[stop])
                if hi > lo:
                    scores.index_put_((mask.rows[lo:hi] - start, mask.cols[lo:hi]), mask.minus_inf)
            val, idx = _select(torch, scores, kk, chunk)
            top_items[start:stop] = torch.where(torch.isneginf(val), -1, idx).to(torch.int32)
            top_scores[start:stop] = val
        out_items = np.full((n_users, k), -1, dtype=np.int32)
        out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        out_items[:, :kk] = top_items.cpu().numpy()
        out_scores[:, :kk] = top_scores.cpu().numpy()
        return out_items, out_scores


# Chunks per wanted item in TorchSearcher's selection: the second stage reads 1 / _CHUNKS_PER_K of each row.
_CHUNKS_PER_K = 8


class _DeviceMask(NamedTuple):
    offsets: np.ndarray  # [rows + 1] on the host: where each row's excluded items start in rows/cols
    rows: Any  # int64 tensor on the device
    cols: Any  # int64 tensor on the device
    minus_inf: Any  # float32 scalar tensor on the device


def _seen_on_device(torch: Any, seen: Exclusions, n_users: int, device: Any) -> _DeviceMask:
    """A block's excluded (row, item) pairs on the device, in row order, with host offsets per row."""
    indptr = np.asarray(seen.indptr, dtype=np.int64)
    offsets = indptr - indptr[0]
    total = int(offsets[-1])
    cols = torch.as_tensor(np.ascontiguousarray(seen.indices[indptr[0] : indptr[-1]])).to(device).long()
    counts = torch.as_tensor(np.diff(offsets)).to(device)
    rows = torch.repeat_interleave(torch.arange(n_users, device=device), counts, output_size=total)
    return _DeviceMask(offsets, rows, cols, torch.tensor(float("-inf"), device=device))


def _select(torch: Any, scores: Any, kk: int, chunk: int) -> tuple[Any, Any]:
    """Each row's ``kk`` best (values, item indices), best first; exact, ties in any order."""
    if chunk == 1:
        return torch.topk(scores, kk, dim=1, sorted=True)
    rows = scores.shape[0]
    blocks = scores.view(rows, -1, chunk)
    best_blocks = torch.topk(blocks.amax(dim=2), kk, dim=1, sorted=False).indices
    picked = torch.gather(blocks, 1, best_blocks[:, :, None].expand(-1, -1, chunk)).view(rows, kk * chunk)
    val, pos = torch.topk(picked, kk, dim=1, sorted=True)
    return val, torch.gather(best_blocks, 1, pos // chunk) * chunk + pos % chunk


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
