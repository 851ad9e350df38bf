"""Sort keys of a threshold's survivors, in compiled loops (numba): the part of a guessed top-K selection that is
a loop over a few hundred hits per query, which numpy can only run as a dozen passes over temporary arrays.

Only the batch layer's guessed selection (:class:`lambdarec.model.topk_threshold.ThresholdSelection`) imports this
module, on its first tile. The kernels release the GIL, so the scoring threads run them side by side. They compile
once per machine into numba's cache (:mod:`lambdarec.compiled`); where no cache folder is writable, once per
process (about a second).

Example
-------
>>> words = np.packbits(np.array([0, 1, 0, 1] + [0] * 60, bool), bitorder="little").view(np.uint64)
>>> keys = survivor_keys(words, np.array([[9.0, 2.0, 9.0, 1.0]], np.float32), np.zeros(1, np.float32), 0, 2)
>>> (keys & np.uint64(3)).tolist()  # the columns; above them the descending-score code, above that the row
[1, 3]
"""

from __future__ import annotations

import numpy as np

from lambdarec.compiled import compiled

_SIGN = np.uint64(0x80000000)
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)
_NEG_INF_BITS = np.uint32(0xFF800000)
# The lowest set bit's index by a de Bruijn multiply: (low * _DEBRUIJN) >> 58 is distinct for each power of two.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_POWERS = np.uint64(1) << np.arange(64, dtype=np.uint64)
_BIT_OF = np.zeros(64, dtype=np.int64)
_BIT_OF[((_POWERS * _DEBRUIJN) >> np.uint64(58)).astype(np.int64)] = np.arange(64)


@compiled
def _count_bits(words: np.ndarray) -> int:  # pragma: no cover - compiled
    n = 0
    for w in range(len(words)):
        m = words[w]
        while m:
            m &= m - _ONE
            n += 1
    return n


@compiled
def _fill_keys(
    words: np.ndarray,
    scores: np.ndarray,
    width: int,
    adds: np.ndarray,
    offset: int,
    col_bits: int,
    bit_of: np.ndarray,
    keys: np.ndarray,
) -> None:  # pragma: no cover - compiled
    value = np.empty(1, np.float32)
    value_bits = value.view(np.uint32)
    row_shift, col_shift = np.uint64(32 + col_bits), np.uint64(col_bits)
    n = 0
    row = 0
    row_start = 0
    for w in range(len(words)):
        m = words[w]
        while m:
            low = m & (~m + _ONE)
            m ^= low
            flat = 64 * w + bit_of[(low * _DEBRUIJN) >> np.uint64(58)]
            while flat >= row_start + width:
                row += 1
                row_start += width
            # + 0: -0.0 becomes 0.0, so equal scores tie as in a sort
            value[0] = (scores[flat] + adds[row]) + np.float32(0.0)
            bits = np.uint64(value_bits[0])
            ascending = (bits ^ _LOW32) if bits >= _SIGN else (bits | _SIGN)
            code = ascending ^ _LOW32  # lambdarec.model.topk.encode_descending
            keys[n] = (np.uint64(row) << row_shift) | (code << col_shift) | np.uint64(flat - row_start + offset)
            n += 1


@compiled
def _fill_best(
    keys: np.ndarray, row_shift: int, col_bits: int, indices: np.ndarray, bits: np.ndarray, short: np.ndarray
) -> None:  # pragma: no cover - compiled
    rows, k = indices.shape
    col_mask = (_ONE << np.uint64(col_bits)) - _ONE
    start = 0
    for row in range(rows):
        stop = start
        while stop < len(keys) and (keys[stop] >> np.uint64(row_shift)) == np.uint64(row):
            stop += 1
        if stop - start < k:
            short[row] = True
            for j in range(k):
                indices[row, j] = -1
                bits[row, j] = _NEG_INF_BITS
        else:
            for j in range(k):
                key = keys[start + j]
                indices[row, j] = key & col_mask
                ascending = ((key >> np.uint64(col_bits)) & _LOW32) ^ _LOW32
                # lambdarec.model.topk.decode_descending
                bits[row, j] = (ascending ^ _SIGN) if ascending >= _SIGN else (ascending ^ _LOW32)
        start = stop


def best_of_rows(keys: np.ndarray, rows: int, k: int, col_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's first ``k`` of the sorted :func:`survivor_keys` ``keys``, decoded: int32 ``[rows, k]`` columns,
    float32 ``[rows, k]`` scores and the bool ``[rows]`` of rows with fewer than ``k`` keys (``-1`` / ``-inf``).

    Example
    -------
    >>> words = np.array([0b1011], np.uint64)
    >>> keys = np.sort(survivor_keys(words, np.array([[1.0, 3.0], [2.0, 0.0]], np.float32), np.zeros(2), 0, 1))
    >>> idx, val, short = best_of_rows(keys, 2, 1, 1)
    >>> idx.tolist(), val.tolist(), short.tolist()
    ([[1], [1]], [[3.0], [0.0]], [False, False])
    """
    indices = np.empty((rows, k), dtype=np.int32)
    values = np.empty((rows, k), dtype=np.float32)
    short = np.zeros(rows, dtype=bool)
    _fill_best(keys, 32 + col_bits, col_bits, indices, values.view(np.uint32), short)
    return indices, values, short


def survivor_keys(words: np.ndarray, scores: np.ndarray, adds: np.ndarray, offset: int, col_bits: int) -> np.ndarray:
    """uint64 keys ``row << (32 + col_bits) | descending code of (score + adds[row]) << col_bits | column``, one per
    set bit of ``words``, in flat order.

    Parameters
    ----------
    words
        uint64 ``[ceil(rows * width / 64)]``: bit ``b`` of word ``w`` marks flat entry ``64 * w + b`` of ``scores``
        (``np.packbits(mask, bitorder="little").view(np.uint64)``); no bit set past the last entry.
    scores
        float32 ``[rows, width]``, C-contiguous: the tile the bits were taken from.
    adds
        float32 ``[rows]`` added to each row's scores before encoding (a shifted tile's thresholds, else zeros).
    offset
        The tile's first column: added to each column.
    col_bits
        Bits reserved for a column (``rows``, 32 and ``col_bits`` bits must fit in 64).
    """
    keys = np.empty(_count_bits(words), dtype=np.uint64)
    flat = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    adds = np.ascontiguousarray(adds, dtype=np.float32)
    _fill_keys(words, flat, scores.shape[1], adds, offset, col_bits, _BIT_OF, keys)
    return keys
