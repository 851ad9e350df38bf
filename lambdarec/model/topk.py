"""Exact top-K selection over scores that arrive in column tiles, and masking of excluded (already seen) items.

A full per-row ``argpartition`` costs about 10 ns per score here, six times the matmul that produced it. Instead,
for each tile of columns, two cheap vectorised passes find a per-row threshold that at least K scores reach:

1. split the tile's columns into ``G = 4*K`` strided groups and take each group's maximum (one SIMD pass);
2. the K-th largest of those G maxima is a lower bound of the row's K-th largest score (K groups each hold a
   score at or above it). The running threshold is the largest bound seen so far, so ``scores >= threshold``
   keeps every top-K item and only about 1.2*K survivors per row and tile.

The few survivors are finally ordered by a per-row ``sort`` of packed 64-bit keys ``(descending score, item)``,
so ties break towards the lower item index whatever the tiling.

Example
-------
>>> s = np.array([[0.1, 0.9, 0.5, -np.inf]], dtype=np.float32)
>>> idx, val = select_topk(s, 2)
>>> idx.tolist(), val.tolist()
([[1, 2]], [[0.8999999761581421, 0.5]])
"""

from __future__ import annotations

import numpy as np

# Strided groups per wanted item: 4*K groups leave ~1.2*K survivors per row; more groups cost a longer partition.
GROUPS_PER_K = 4
_LOWEST = np.finfo(np.float32).min
_SIGN = np.uint32(0x80000000)
_MAGNITUDE = np.uint32(0x7FFFFFFF)
_EMPTY = np.uint64(np.iinfo(np.uint64).max)  # pads rows with fewer survivors; sorts last


class Workspace:
    """Scratch arrays reused across calls in one thread: fresh multi-MiB buffers would page-fault every chunk.

    Example
    -------
    >>> w = Workspace()
    >>> w.array("scores", (2, 3), np.float32).shape
    (2, 3)
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape``, backed by the buffer ``name`` (grown when needed)."""
        size = int(np.prod(shape))
        buf = self._arrays.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._arrays[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


class RunningTopK:
    """Exact top-K of each row of a ``[rows, n_cols]`` score matrix fed one column tile at a time.

    Parameters
    ----------
    rows, n_cols
        Shape of the whole score matrix.
    k
        Items wanted per row, ``>= 1``.
    workspace
        Scratch buffers to reuse across calls in the same thread.

    Example
    -------
    >>> top = RunningTopK(1, 4, 2)
    >>> top.add(np.array([[1.0, 5.0]], np.float32), 0)
    >>> top.add(np.array([[3.0, 2.0]], np.float32), 2)
    >>> top.result()[0].tolist()
    [[1, 2]]
    """

    def __init__(self, rows: int, n_cols: int, k: int, workspace: Workspace | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        if n_cols >= 1 << 32:
            raise ValueError(f"{n_cols} columns; at most 2**32 - 1 are supported")
        self.rows, self.n_cols, self.k = rows, n_cols, k
        self._col_bits = max(1, (n_cols - 1).bit_length())
        self._threshold = np.full(rows, -np.inf, dtype=np.float32)
        self._work = workspace or Workspace()
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, value, key) of survivors

    def add(self, scores: np.ndarray, offset: int) -> None:
        """Take the tile ``scores``: float32 ``[rows, width]`` of columns ``offset:offset + width``, -inf = excluded."""
        rows, width = scores.shape
        if rows != self.rows or scores.dtype != np.float32 or offset + width > self.n_cols:
            raise ValueError(
                f"tile must be float32 [{self.rows}, width] within {self.n_cols} columns; "
                f"got {scores.dtype} {scores.shape} at column {offset}"
            )
        if width >= self.k:  # a tile narrower than K cannot bound the K-th score
            groups = min(width, GROUPS_PER_K * self.k)
            depth = width // groups
            group_max = scores[:, : depth * groups].reshape(rows, depth, groups).max(axis=1)
            tail = width - depth * groups
            if tail:
                np.maximum(group_max[:, :tail], scores[:, depth * groups :], out=group_max[:, :tail])
            bound = np.partition(group_max, groups - self.k, axis=1)[:, groups - self.k]
            np.fmax(self._threshold, bound, out=self._threshold)  # fmax: a NaN score cannot poison the bound
        threshold = np.maximum(self._threshold, _LOWEST)  # -inf (excluded) never survives
        above = np.greater_equal(scores, threshold[:, None], out=self._work.array("above", scores.shape, np.bool_))
        flat = np.flatnonzero(above)
        row = flat // width
        col = flat - row * width
        vals = scores.reshape(-1)[flat] if scores.flags.c_contiguous else scores[row, col]
        vals = vals + np.float32(0)  # -0.0 becomes 0.0: equal scores tie as in a sort
        keys = encode_descending(vals).astype(np.uint64) << np.uint64(self._col_bits)
        keys |= (col + offset).astype(np.uint64)
        self._parts.append((row, vals, keys))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """int32 ``[rows, k]`` column indices and float32 ``[rows, k]`` scores, best first; ``-1`` / ``-inf`` pad
        rows with fewer than ``k`` finite scores."""
        k, rows = self.k, self.rows
        indices = np.full((rows, k), -1, dtype=np.int32)
        values = np.full((rows, k), -np.inf, dtype=np.float32)
        if rows == 0 or not self._parts:
            return indices, values
        row, vals, keys = (np.concatenate(x) for x in zip(*self._parts, strict=True))
        if len(self._parts) > 1:  # earlier tiles kept scores under the final, higher threshold
            keep = vals >= self._threshold[row]
            row, keys = row[keep], keys[keep]
            order = np.argsort(row.astype(np.uint16 if rows <= 1 << 16 else np.int64), kind="stable")
            row, keys = row[order], keys[order]
        counts = np.bincount(row, minlength=rows)
        starts = np.zeros(rows, dtype=np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        # Small per-row sorts of a padded matrix run several times faster than one flat sort of all survivors.
        padded = np.full((rows, max(k, int(counts.max()))), _EMPTY, dtype=np.uint64)
        padded[row, np.arange(row.size) - starts[row]] = keys
        padded.sort(axis=1)
        top = padded[:, :k]
        valid = top != _EMPTY
        indices[:] = np.where(valid, (top & np.uint64((1 << self._col_bits) - 1)).astype(np.int32), -1)
        values[:] = np.where(valid, decode_descending(top >> np.uint64(self._col_bits)), -np.inf)
        return indices, values


def select_topk(scores: np.ndarray, k: int, workspace: Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The K highest finite scores of each row, highest first; ties go to the lower column.

    Parameters
    ----------
    scores
        float32 ``[rows, n]``; ``-inf`` marks a column that must not be returned (already seen, padding).
    k
        Items wanted per row, ``>= 1``.
    workspace
        Scratch buffers to reuse across calls in the same thread.

    Returns
    -------
    (indices, values)
        int32 ``[rows, k]`` column indices and float32 ``[rows, k]`` scores. Where a row has fewer than ``k``
        finite scores, the tail holds ``-1`` and ``-inf``.

    Example
    -------
    >>> idx, val = select_topk(np.array([[3.0, 1.0, 2.0]], dtype=np.float32), 2)
    >>> idx.tolist()
    [[0, 2]]
    """
    if scores.ndim != 2 or scores.dtype != np.float32:
        raise ValueError(f"scores must be a 2-D float32 array; got {scores.ndim}-D {scores.dtype}")
    top = RunningTopK(scores.shape[0], scores.shape[1], k, workspace)
    top.add(scores, 0)
    return top.result()


def encode_descending(values: np.ndarray) -> np.ndarray:
    """uint32 codes whose ascending order is the float32 values' descending order."""
    bits = values.view(np.uint32)
    ascending = np.where(bits >= _SIGN, ~bits, bits | _SIGN)
    return ~ascending


def decode_descending(codes: np.ndarray) -> np.ndarray:
    """The float32 values of (the low 32 bits of) codes made by :func:`encode_descending`."""
    ascending = ~codes.astype(np.uint32)
    bits = np.where(ascending >= _SIGN, ascending & _MAGNITUDE, ~ascending)
    return bits.view(np.float32)


def mask_excluded(scores: np.ndarray, indptr: np.ndarray, indices: np.ndarray, offset: int = 0) -> None:
    """Set ``scores[r, c - offset] = -inf`` for every column ``c`` listed for row ``r`` in CSR form, in place.

    Parameters
    ----------
    scores
        float32 ``[rows, width]``, C-contiguous: columns ``offset:offset + width`` of the score matrix.
    indptr, indices
        CSR structure with ``rows + 1`` pointers (they may start above 0, as a row slice's do).
    offset
        First column held by ``scores``; listed columns outside the tile are ignored.

    Example
    -------
    >>> s = np.zeros((2, 3), dtype=np.float32)
    >>> mask_excluded(s, np.array([0, 1, 3]), np.array([2, 0, 1]))
    >>> s.tolist()
    [[0.0, 0.0, -inf], [-inf, -inf, 0.0]]
    """
    rows, width = scores.shape
    if not scores.flags.c_contiguous:
        raise ValueError("scores must be C-contiguous to be masked in place; pass np.ascontiguousarray(scores)")
    if len(indptr) != rows + 1:
        raise ValueError(f"indptr must have rows + 1 = {rows + 1} entries; got {len(indptr)}")
    start, stop = int(indptr[0]), int(indptr[-1])
    if stop == start:
        return
    cols = np.asarray(indices[start:stop], dtype=np.int64) - offset
    owner = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    if offset or width < cols.max(initial=0) + 1:
        inside = (cols >= 0) & (cols < width)
        cols, owner = cols[inside], owner[inside]
    scores.reshape(-1)[owner * width + cols] = -np.inf
