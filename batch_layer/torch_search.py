"""Exact top-K on a CUDA device with torch: :class:`TorchSearcher` (``batch.device = "cuda"``, exact index).

Every step of users goes through the device in a pipeline: while one step is scored, the host stages the next
step's inputs in page-locked memory and copies out the previous step's results. Selection is the Triton kernels of
:mod:`batch_layer.gpu_select` where they can run, else a matrix product and an exact two-stage ``topk`` in torch.
torch is imported only when a searcher is built.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from lambdarec.logs import get_logger
from lambdarec.model.scoring import Exclusions

log = get_logger(__name__)

# Score-matrix elements per GPU step (1 GiB of float32), whatever the block size.
_GPU_STEP_ELEMENTS = 1 << 28


class TorchSearcher:
    """Exact inner-product top-K on a CUDA device, seen items excluded.

    Selection, by ``fused``:

    * **Triton** (default where Triton and a CUDA device are there, factors are at most 64 wide and the catalog
      has at least ``64 k`` items): :class:`batch_layer.gpu_select.FusedSelector`, which never writes the score
      matrix. A first launch that fails is logged (``candidates.gpu_select_fallback``) and the torch selection
      used from then on;
    * **torch** (otherwise, or ``fused=False``): ``matmul``, seen items masked, then an exact two-stage selection.
      The items are cut into chunks of ``c`` and each user's ``k`` best chunk maxima picked first. The ``k``-th of
      them bounds the ``k``-th best score from below, so the top ``k`` items all lie in those ``k`` chunks, and one
      ``topk`` over their ``k * c`` scores (about an eighth of the row) finishes it. That reads the score matrix
      about once instead of the several passes of a ``topk`` over every item. Small catalogs use one ``topk``.

    ``fused=True`` asks for the Triton selector and raises where it cannot run (a GPU request that cannot be
    honoured says so). Ties may come back in another order than on the CPU; scores agree to float32 rounding.
    """

    def __init__(self, item_factors: np.ndarray, device: str = "cuda", *, fused: bool | None = None) -> None:
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
        # None: the Triton selector where it can run (CUDA), else the torch one; True: it or an error; False: never
        self.fused = fused if device.startswith("cuda") or fused else False
        self._fused: Any = None
        self._fused_ran = False

    def _fused_selector(self, kk: int) -> Any:
        """The Triton selector (:mod:`batch_layer.gpu_select`) when it may run here and suits ``kk``, else None."""
        if self.fused is False:
            return None
        from batch_layer import gpu_select

        if not gpu_select.available():
            if self.fused:
                raise RuntimeError("fused GPU top-K asked for, but Triton is not installed or sees no CUDA device")
            return None
        if self._fused is None:
            self._fused = gpu_select.FusedSelector(self._items)
        why = self._fused.unusable(kk)
        if why and self.fused:
            raise RuntimeError(f"fused GPU top-K asked for, but it cannot serve this search: {why}")
        return None if why else self._fused

    def _fused_step(self, fused: Any, users: Any, pairs: Any, kk: int) -> tuple[Any, Any]:
        """The Triton selector's answer for one step. Its first launch failing when it was not asked for by name
        (e.g. no C compiler for Triton's driver, a GPU its kernels do not fit) is logged and raises
        :class:`_FellBack`: the searcher keeps to the torch selection from then on."""
        try:
            out = fused.select(users, *(pairs or (None, None)), kk)
        except Exception as exc:
            if self.fused or self._fused_ran:
                raise
            log.warning("candidates.gpu_select_fallback", reason=f"{type(exc).__name__}: {exc}"[:500])
            self.fused, self._fused = False, None  # its padded copy of the items goes too
            raise _FellBack from exc
        self._fused_ran = True
        return out

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
            try:
                return self._search(user_vectors, seen, k)
            except _FellBack:  # only ever at the first step of a search: nothing was copied out yet
                return self._search(user_vectors, seen, k)

    def _search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps of users, pipelined: while the device scores one step, the host stages the next step's inputs
        and copies out the previous step's results."""
        torch = self._torch
        n_users, n_items = len(user_vectors), self.n_items
        kk = min(k, n_items)
        chunk = self._chunk(kk)
        fused = self._fused_selector(kk)
        items = None if fused else self._padded_items(chunk)
        step = fused.step_rows(kk, _GPU_STEP_ELEMENTS) if fused else max(1, _GPU_STEP_ELEMENTS // len(items))
        out_items = np.empty((n_users, k), dtype=np.int32)
        out_scores = np.empty((n_users, k), dtype=np.float32)
        out_items[:, kk:], out_scores[:, kk:] = -1, -np.inf
        host_users = self._host("users", (n_users, self._items.shape[1]), torch.float32)
        host_items = self._host("items", (n_users, kk), torch.int32)
        host_scores = self._host("scores", (n_users, kk), torch.float32)
        indptr = None if seen is None else np.asarray(seen.indptr, dtype=np.int64)
        host_cols = None if indptr is None else self._host("seen", (int(indptr[-1] - indptr[0]),), torch.int32)
        host_counts = None if indptr is None else self._host("counts", (n_users,), torch.int64)
        pending: tuple[int, int, Any] | None = None
        for start in range(0, n_users, step):
            stop = min(start + step, n_users)
            host_users[start:stop].numpy()[:] = user_vectors[start:stop]
            users = host_users[start:stop].to(self.device, non_blocking=True)
            pairs = None
            if seen is not None and indptr is not None and host_counts is not None and indptr[stop] > indptr[start]:
                step_counts = host_counts[start:stop]
                pairs = _seen_pairs(torch, seen, indptr[start : stop + 1], host_cols, step_counts, self.device)
            if fused:
                val, idx = self._fused_step(fused, users, pairs, kk)
            else:
                scores = users @ items.T
                if len(items) > n_items:
                    scores[:, n_items:] = float("-inf")
                if pairs is not None:
                    scores[pairs] = float("-inf")  # a host scalar: no blocking copy
                val, idx = _select(torch, scores, kk, chunk)
            host_items[start:stop].copy_(torch.where(torch.isneginf(val), -1, idx).to(torch.int32), non_blocking=True)
            host_scores[start:stop].copy_(val, non_blocking=True)
            if pending is not None:
                _copy_out(pending, host_items, host_scores, out_items, out_scores)
            pending = (start, stop, _recorded(torch, self.device))
        if pending is not None:
            _copy_out(pending, host_items, host_scores, out_items, out_scores)
        return out_items, out_scores


class _FellBack(Exception):
    """The Triton selector's first launch failed; the search runs again with the torch selection."""


# Chunks per wanted item in TorchSearcher's selection: the second stage reads 1 / _CHUNKS_PER_K of each row.
_CHUNKS_PER_K = 8
# Chunk sizes from this up are rounded up to a multiple of it.
_CHUNK_ALIGN = 32


def _recorded(torch: Any, device: Any) -> Any:
    """An event marking the work queued so far on ``device`` (None on the CPU, where work is already done)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event(blocking=True)  # the host waits asleep, not spinning a core
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


def _seen_pairs(
    torch: Any, seen: Exclusions, indptr: np.ndarray, host_cols: Any, host_counts: Any, device: Any
) -> tuple[Any, Any]:
    """A step's excluded (row within the step, item) pairs on the device, as two int64 tensors. ``indptr`` is the
    step's slice of the block's row pointers; ``host_cols`` is the block's staging for excluded items, of which the
    step fills its own part."""
    base = int(seen.indptr[0])
    lo, hi = int(indptr[0]) - base, int(indptr[-1]) - base
    cols = host_cols[lo:hi]
    cols.numpy()[:] = seen.indices[lo + base : hi + base]
    host_counts.numpy()[:] = np.diff(indptr)
    counts = host_counts.to(device, non_blocking=True)
    rows = torch.repeat_interleave(torch.arange(len(indptr) - 1, device=device), counts, output_size=hi - lo)
    return rows, cols.to(device, non_blocking=True).long()


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
