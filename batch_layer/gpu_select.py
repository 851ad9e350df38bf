"""Exact top-K on a CUDA device without the score matrix: two Triton kernels around one small ``topk``.

:class:`batch_layer.model_index.TorchSearcher` writes every score of a step to device memory and reads it back to
select; at ``f = 64`` that traffic costs as much as the product itself. Here:

1. **Chunk maxima** (:func:`_chunk_max`): each program multiplies a tile of users by a tile of items on the tensor
   cores and keeps, per user, the best unseen score of every chunk of 32 items. Scores never leave the registers;
   what is written is one float per user and chunk. Seen items come as a bit mask, one 32-bit word per user and
   chunk, so a chunk is exactly one word.
2. **The best chunks**: ``topk`` over a user's chunk maxima. The ``k``-th best maximum bounds the ``k``-th best
   score from below, so every item of the top ``k`` lies in those ``k`` chunks.
3. **Rescoring** (:func:`_rescore`): the ``32 k`` items of those chunks are scored again in plain float32 (the
   item factors are read from L2), seen ones masked, and one ``topk`` over them gives the result and its scores.

Precision: the chunk maxima use ``tf32x3`` (each float32 split into two TF32 halves, three tensor-core products:
about float32's accuracy). The returned scores come from step 3 in float32. An item whose score is within a few
float32 rounding steps of the ``k``-th best may change places with another such item, as across BLAS block
sizes; nothing further off is ever missed.

Triton ships with torch's CUDA wheels; :func:`available` says whether this process can use it.
"""

from __future__ import annotations

import functools
from typing import Any

CHUNK = 32  # items per chunk: one mask word
_BLOCK_USERS, _BLOCK_ITEMS = 64, 128  # chunk-max tile
_RESCORE_CHUNKS = 4  # chunks rescored per program
_WARPS = 4
# The chunk-max kernel multiplies the whole factor width in one tile: 64 (as measured) keeps its shared memory
# within every recent GPU's; wider factors use the torch selection.
_MAX_F = 64
_MAX_STEP_USERS = 65_535 * _BLOCK_USERS  # the grid's second axis


@functools.cache
def available() -> bool:
    """True when Triton imports and torch sees a CUDA device (or Triton's interpreter is on, for tests)."""
    import importlib.util
    import os

    if importlib.util.find_spec("triton") is None:
        return False
    import torch

    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _kernels() -> tuple[Any, Any]:
    import triton
    import triton.language as tl

    @triton.jit
    def chunk_max(
        users, items, words, maxima, n_rows, n_items, n_words,
        F: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        rn = tl.program_id(0) * BN + tl.arange(0, BN)  # item tiles on axis 0: no 65,535-block limit there
        rm = tl.program_id(1) * BM + tl.arange(0, BM)
        rf = tl.arange(0, F)
        live = rm < n_rows
        u = tl.load(users + rm[:, None] * F + rf[None, :], mask=live[:, None], other=0.0)
        y = tl.load(items + rn.to(tl.int64)[:, None] * F + rf[None, :])  # padded to whole tiles with zeros
        scores = tl.dot(u, tl.trans(y), input_precision=PRECISION)
        rw = tl.program_id(0) * (BN // 32) + tl.arange(0, BN // 32)
        w = tl.load(words + rm[:, None] * n_words + rw[None, :], mask=live[:, None], other=0)
        bits = (w[:, :, None] >> tl.arange(0, 32)[None, None, :]) & 1
        hidden = (tl.reshape(bits, (BM, BN)) != 0) | (rn[None, :] >= n_items)
        scores = tl.where(hidden, float("-inf"), scores)
        best = tl.max(tl.reshape(scores, (BM, BN // 32, 32)), axis=2)
        tl.store(maxima + rm[:, None] * n_words + rw[None, :], best, mask=live[:, None])

    @triton.jit
    def rescore(
        users, items, words, chosen, out, n_items, n_words, kk,
        F: tl.constexpr, BK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0)
        rk = tl.program_id(1) * BK + tl.arange(0, BK)
        live = rk < kk
        chunk = tl.load(chosen + row * kk + rk, mask=live, other=0)
        rc = tl.arange(0, 32)
        rf = tl.arange(0, F)
        item = chunk[:, None] * 32 + rc[None, :]
        u = tl.load(users + row * F + rf)
        y = tl.load(items + item.to(tl.int64)[:, :, None] * F + rf[None, None, :], mask=live[:, None, None], other=0.0)
        scores = tl.sum(y * u[None, None, :], axis=2)
        w = tl.load(words + row * n_words + chunk, mask=live, other=0)
        hidden = (((w[:, None] >> rc[None, :]) & 1) != 0) | (item >= n_items) | (~live[:, None])
        scores = tl.where(hidden, float("-inf"), scores)
        tl.store(out + row * (kk * 32) + rk[:, None] * 32 + rc[None, :], scores, mask=live[:, None])

    return chunk_max, rescore


class FusedSelector:
    """Per-step exact top-K for one item matrix on one device (see the module docstring).

    ``precision`` is Triton's ``input_precision`` for the chunk maxima: ``"tf32x3"`` (default) or ``"ieee"``.
    """

    def __init__(self, item_factors: Any, *, precision: str = "tf32x3") -> None:
        import torch

        self._torch = torch
        self.n_items, f = item_factors.shape
        self.f_given = f
        self.f = max(16, 1 << (f - 1).bit_length())  # a power of two, at least tl.dot's 16
        rows = -(-self.n_items // _BLOCK_ITEMS) * _BLOCK_ITEMS
        self.n_words = rows // CHUNK
        self.items = None  # factors wider than the kernel's tile are never copied
        if self.f <= _MAX_F:
            self.items = torch.zeros((rows, self.f), dtype=torch.float32, device=item_factors.device)
            self.items[: self.n_items, :f] = item_factors
        self.precision = precision

    def unusable(self, kk: int) -> str | None:
        """Why this selector does not suit ``kk`` results, or None when it does."""
        if self.f > _MAX_F:
            return f"{self.f_given} factors: the chunk-max kernel holds at most {_MAX_F} in one tile"
        if self.n_items < 64 * kk:
            return f"{self.n_items} items are under {64 * kk} (64 x K): too few chunks to pick K of them"
        return None

    def step_rows(self, kk: int, budget: int) -> int:
        """Users per step within ``budget`` float32 elements of device work space (and the grid's user axis)."""
        return max(1, min(_MAX_STEP_USERS, budget // (2 * self.n_words + 32 * kk)))

    def select(self, users: Any, rows: Any | None, cols: Any | None, kk: int) -> tuple[Any, Any]:
        """Each user's ``kk`` best unseen (scores, items), best first; ``-inf`` and any item past the unseen ones.

        ``users`` is ``[n, f]`` float32 on the device; ``rows``/``cols`` (int64 on the device, or None) are the
        excluded pairs, ``rows`` counting from 0 within this step.
        """
        torch = self._torch
        chunk_max, rescore = _kernels()
        n = users.shape[0]
        if users.shape[1] != self.f:
            users = torch.nn.functional.pad(users, (0, self.f - users.shape[1]))
        users = users.contiguous()
        words = torch.zeros((n, self.n_words), dtype=torch.int32, device=users.device)
        if rows is not None and cols is not None and len(cols):
            # Distinct bits of a word add up to their "or"; a pair given twice must count once. Sorted, a repeat
            # follows its first and adds 0 (torch.unique would make the host wait for its size).
            width = self.n_words * CHUNK
            pairs = torch.sort(rows * width + cols).values
            first = torch.ones_like(pairs, dtype=torch.bool)
            first[1:] = pairs[1:] != pairs[:-1]
            rows, cols = pairs // width, pairs % width
            bit = torch.bitwise_left_shift(first.to(torch.int32), (cols % CHUNK).to(torch.int32))
            words.index_put_((rows, cols // CHUNK), bit, accumulate=True)
        maxima = torch.empty((n, self.n_words), dtype=torch.float32, device=users.device)
        grid = (len(self.items) // _BLOCK_ITEMS, -(-n // _BLOCK_USERS))
        chunk_max[grid](
            users, self.items, words, maxima, n, self.n_items, self.n_words,
            F=self.f, BM=_BLOCK_USERS, BN=_BLOCK_ITEMS, PRECISION=self.precision, num_warps=_WARPS,
        )  # fmt: skip
        chosen = torch.topk(maxima, kk, dim=1, sorted=False).indices.contiguous()
        picked = torch.empty((n, kk * CHUNK), dtype=torch.float32, device=users.device)
        rescore[(n, -(-kk // _RESCORE_CHUNKS))](
            users, self.items, words, chosen, picked, self.n_items, self.n_words, kk, F=self.f, BK=_RESCORE_CHUNKS
        )
        val, pos = torch.topk(picked, kk, dim=1, sorted=True)
        return val, torch.gather(chosen, 1, pos // CHUNK) * CHUNK + pos % CHUNK
