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
import threading
from typing import Any

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
        self._padded: dict[int, Any] = {}
        self._staging: dict[str, Any] = {}
        self._lock = threading.Lock()  # one search at a time: the staging tensors are shared

    def _chunk(self, kk: int) -> int:
        """Items per chunk of the two-stage selection (1: a single ``topk``), a multiple of ``_CHUNK_ALIGN``
        once it reaches it, so that the chunk maxima read whole aligned rows."""
        chunk = max(1, self.n_items // (_CHUNKS_PER_K * kk))
        return chunk if chunk < _CHUNK_ALIGN else -(-chunk // _CHUNK_ALIGN) * _CHUNK_ALIGN

    def _padded_items(self, chunk: int) -> Any:
        """The item factors with zero rows up to a whole number of chunks (their scores are masked)."""
        padded = -(-self.n_items // chunk) * chunk
        if padded not in self._padded:
            extra = padded - self.n_items
            self._padded[padded] = (
                self._torch.nn.functional.pad(self._items, (0, 0, 0, extra)) if extra else self._items
            )
        return self._padded[padded]

    def _host(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """A reused host staging tensor, page-locked on CUDA so copies to and from the device run at full speed
        and without blocking."""
        have = self._staging.get(name)
        if have is None or have.shape[0] < shape[0] or have.shape[1:] != shape[1:]:
            have = self._torch.empty(shape, dtype=dtype, pin_memory=self.device.type == "cuda")
            self._staging[name] = have
        return have[: shape[0]]

    def search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self._search(user_vectors, seen, k)

    def _search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps of users, pipelined: while the device scores one step, the host stages the next step's inputs
        and copies out the previous step's results."""
        torch = self._torch
        n_users, n_items = len(user_vectors), self.n_items
        kk = min(k, n_items)
        chunk = self._chunk(kk)
        items = self._padded_items(chunk)
        step = max(1, _GPU_STEP_ELEMENTS // len(items))
        out_items = np.empty((n_users, k), dtype=np.int32)
        out_scores = np.empty((n_users, k), dtype=np.float32)
        out_items[:, kk:], out_scores[:, kk:] = -1, -np.inf
        host_users = self._host("users", (n_users, items.shape[1]), torch.float32)
        host_items = self._host("items", (n_users, kk), torch.int32)
        host_scores = self._host("scores", (n_users, kk), torch.float32)
        indptr = None if seen is None else np.asarray(seen.indptr, dtype=np.int64)
        host_cols = None if indptr is None else self._host("seen", (int(indptr[-1] - indptr[0]),), torch.int32)
        pending: tuple[int, int, Any] | None = None
        for start in range(0, n_users, step):
            stop = min(start + step, n_users)
            host_users[start:stop].numpy()[:] = user_vectors[start:stop]
            scores = host_users[start:stop].to(self.device, non_blocking=True) @ items.T
            if len(items) > n_items:
                scores[:, n_items:] = float("-inf")
            if seen is not None and indptr is not None and indptr[stop] > indptr[start]:
                _mask_seen(torch, scores, seen, indptr[start : stop + 1], host_cols, self.device)
            val, idx = _select(torch, scores, kk, chunk)
            host_items[start:stop].copy_(torch.where(torch.isneginf(val), -1, idx).to(torch.int32), non_blocking=True)
            host_scores[start:stop].copy_(val, non_blocking=True)
            if pending is not None:
                _copy_out(pending, host_items, host_scores, out_items, out_scores)
            pending = (start, stop, _recorded(torch, self.device))
        if pending is not None:
            _copy_out(pending, host_items, host_scores, out_items, out_scores)
        return out_items, out_scores


# Chunks per wanted item in TorchSearcher's selection: the second stage reads 1 / _CHUNKS_PER_K of each row.
_CHUNKS_PER_K = 8
# Chunk sizes from this up are rounded up to a multiple of it.
_CHUNK_ALIGN = 32


def _recorded(torch: Any, device: Any) -> Any:
    """An event marking the work queued so far on ``device`` (None on the CPU, where work is already done)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def _copy_out(
    pending: tuple[int, int, Any], host_items: Any, host_scores: Any, out_items: np.ndarray, out_scores: np.ndarray
) -> None:
    """Wait for one step's results to reach the host staging, then copy them into the caller's arrays."""
    start, stop, event = pending
    if event is not None:
        event.synchronize()
    kk = host_items.shape[1]
    out_items[start:stop, :kk] = host_items[start:stop].numpy()
    out_scores[start:stop, :kk] = host_scores[start:stop].numpy()


def _mask_seen(torch: Any, scores: Any, seen: Exclusions, indptr: np.ndarray, host_cols: Any, device: Any) -> None:
    """Set a step's excluded (row, item) scores to -inf. ``indptr`` is the step's slice of the block's row
    pointers; ``host_cols`` is the block's staging for excluded items, of which the step fills its own part."""
    base = int(seen.indptr[0])
    lo, hi = int(indptr[0]) - base, int(indptr[-1]) - base
    cols = host_cols[lo:hi]
    cols.numpy()[:] = seen.indices[lo + base : hi + base]
    counts = torch.from_numpy(np.diff(indptr)).to(device, non_blocking=True)
    rows = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=device), counts, output_size=hi - lo)
    scores[rows, cols.to(device, non_blocking=True).long()] = float("-inf")  # a host scalar: no blocking copy


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
