"""Exact top-K behind a guessed per-query threshold, so most scores never enter the selection.

For each query ``u`` the scores over all items have mean ``u . mean(items)`` and deviation
``sqrt(u' cov(items) u)``; :class:`ThresholdGuess` guesses the K-th best score as ``mean + z * deviation``, with
``z`` learnt from the exact K-th scores of the queries already selected (a low quantile of them). One vectorised
pass keeps the scores at or above the guess (already-seen items are ``-inf`` and never pass). When at least K of a
query's scores pass, its K-th best score is at or above the guess, so every item of its exact top-K passes, ties
included, and only those few hundred survivors are ordered. A query with fewer than K survivors (a guess too
high, a user who has seen nearly everything) is selected again behind a second, lower guess
(:attr:`ThresholdGuess.z_floor`), and if still short over its full row by
:class:`lambdarec.model.topk.RunningTopK`: a wrong guess costs time, never exactness.

Finding the survivors is the costly part: numpy compares a tile with the thresholds and packs the result to bits
(``np.packbits``); a compiled loop (:mod:`lambdarec.model.survivors`, numba) skips the zero words and turns each
set bit into one sort key, where numpy needed a dozen passes over temporary arrays (``np.flatnonzero`` alone pays
a branch miss per hit).

Example
-------
>>> y = np.random.default_rng(0).standard_normal((500, 4)).astype(np.float32)
>>> guess = ThresholdGuess(y, k=5)
>>> guess.learn(y[:64], np.sort(y[:64] @ y.T, axis=1)[:, -5])
>>> guess.ready
True
"""

from __future__ import annotations

import threading

import numpy as np

from lambdarec.model.topk import Workspace

# Share of queries whose guess may be too high (they are selected again over their full row): a lower share means
# more survivors for every other query. 0.2-1% measured best at 20k items (benchmarks/topk.py).
MISS_RATE = 0.005
# Exact K-th scores remembered to learn z from; queries seen before z is learnt go through RunningTopK.
WINDOW, WARM_UP, REFRESH = 4096, 64, 1024
# The second guess, for the queries the first was too high for: the lowest learnt ratio less FLOOR_MARGIN, but at
# most FLOOR_SPAN below z, so that one outlier cannot turn the second pass into a selection over every score.
FLOOR_MARGIN, FLOOR_SPAN = 0.1, 0.5
_TINY = np.finfo(np.float32).tiny


class ThresholdGuess:
    """Guesses each query's K-th best score from the item factors' mean and covariance; learns its multiplier.

    Thread-safe: one instance serves every scoring thread of a searcher.

    Parameters
    ----------
    item_factors
        float32 ``[n_items, f]``, the items scored.
    k
        Items selected per query.
    miss_rate
        The low quantile of learnt ratios used as ``z`` (the share of queries expected to be selected again).
    shifted_items_t
        :func:`shifted_transpose` of ``item_factors`` when the caller already holds it (shared, not copied).
    """

    def __init__(
        self,
        item_factors: np.ndarray,
        k: int,
        miss_rate: float = MISS_RATE,
        shifted_items_t: np.ndarray | None = None,
    ) -> None:
        items = np.asarray(item_factors, dtype=np.float32)
        n, f = items.shape
        self.k, self.miss_rate = k, miss_rate
        mean = items.mean(axis=0, dtype=np.float64) if n else np.zeros(f)
        gram = np.zeros((f, f))
        for first in range(0, n, 1 << 16):  # float64 in slices: no full float64 copy of a large catalogue
            part = items[first : first + (1 << 16)].astype(np.float64)
            gram += part.T @ part
        self.mean = mean.astype(np.float32)
        self.cov = (gram / max(1, n) - np.outer(mean, mean)).astype(np.float32)
        # [items.T; 1]: with a query [u, -t] the sgemm yields u.v - t, so the survivors test is one compare with
        # the scalar 0, twice as fast in numpy as a compare with a per-row threshold.
        self.shifted_items_t = shifted_items_t if shifted_items_t is not None else shifted_transpose(items)
        self._ratios = np.zeros(0, dtype=np.float64)
        self._fresh = 0
        self._lock = threading.Lock()
        self.z: float | None = None
        self.z_floor: float | None = None  # the second guess's multiplier (FLOOR_MARGIN); learnt with z

    @property
    def ready(self) -> bool:
        """Whether ``z`` has been learnt from enough exact results."""
        return self.z is not None

    def moments(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each query's scores over all items: float32 ``[q]`` each."""
        mean = queries @ self.mean
        var = np.einsum("ij,ij->i", queries @ self.cov, queries)
        return mean, np.sqrt(np.maximum(var, 0.0))

    def thresholds(
        self,
        queries: np.ndarray,
        moments: tuple[np.ndarray, np.ndarray] | None = None,
        z: float | None = None,
    ) -> np.ndarray:
        """float32 ``[q]`` guesses of each query's K-th best score; NaN where no safe guess can be made (not
        finite, or far outside the query's score range, where subtracting it would round its scores away): such
        a query falls back. ``moments``: :meth:`moments` of ``queries`` when already computed; ``z``: another
        multiplier than the learnt :attr:`z` (e.g. :attr:`z_floor`)."""
        if self.z is None:
            raise RuntimeError("ThresholdGuess.thresholds called before learn(); check .ready first")
        mean, dev = self.moments(queries) if moments is None else moments
        with np.errstate(over="ignore", invalid="ignore"):
            guess = (mean + (self.z if z is None else z) * dev).astype(np.float32)
            safe = np.abs(guess) <= 2 * (np.abs(mean) + 8 * dev) + _TINY
        return np.where(safe, guess, np.float32(np.nan))

    def shifted_queries(self, queries: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """float32 ``[q, f + 1]``: ``[u, -t]``, whose product with :attr:`shifted_items_t` is ``u.v - t``."""
        out = np.empty((len(queries), queries.shape[1] + 1), dtype=np.float32)
        out[:, :-1] = queries
        out[:, -1] = -thresholds
        return out

    def learn(self, queries: np.ndarray, kth: np.ndarray, moments: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Remember the exact K-th best scores ``kth`` of ``queries``; NaN or rows without K finite scores are
        ignored. ``moments``: :meth:`moments` of ``queries`` when already computed."""
        mean, dev = self.moments(queries) if moments is None else moments
        usable = np.isfinite(kth) & (dev > 0)
        if not usable.any():
            return
        ratios = (kth[usable] - mean[usable]) / dev[usable]
        with self._lock:
            self._ratios = np.concatenate([self._ratios, ratios])[-WINDOW:]
            self._fresh += len(ratios)
            # The quantile costs more than the rest of a chunk's learning: redo it every REFRESH new ratios.
            if len(self._ratios) >= WARM_UP and (self.z is None or self._fresh >= REFRESH):
                self.z = float(np.quantile(self._ratios, self.miss_rate))
                self.z_floor = max(float(self._ratios.min()), self.z - FLOOR_SPAN) - FLOOR_MARGIN
                self._fresh = 0


def shifted_transpose(item_factors: np.ndarray) -> np.ndarray:
    """C-contiguous float32 ``[f + 1, n_items]``: the item factors transposed over a row of ones; its first ``f``
    rows are the plain transpose, for whoever needs both.

    Example
    -------
    >>> shifted_transpose(np.array([[1.0, 2.0]], np.float32)).tolist()
    [[1.0], [2.0], [1.0]]
    """
    items = np.asarray(item_factors, dtype=np.float32)
    out = np.ones((items.shape[1] + 1, len(items)), dtype=np.float32)
    out[:-1] = items.T
    return out


def hit_words(scores: np.ndarray, thresholds: np.ndarray | float, workspace: Workspace) -> np.ndarray:
    """uint64 words whose bits mark the entries of C-contiguous float32 ``scores [rows, width]`` at or above their
    row's threshold (float32 ``[rows]``, or one number for all rows): bit ``b`` of word ``w`` is flat entry
    ``64 * w + b``; the bits past the last entry are clear.

    Example
    -------
    >>> s = np.array([[1.0, 5.0, 3.0], [4.0, 0.0, 9.0]], np.float32)
    >>> bin(int(hit_words(s, np.array([3.0, 5.0], np.float32), Workspace())[0]))
    '0b100110'
    """
    n = scores.size
    above = workspace.array("hits_mask", (-(-n // 64) * 64,), np.bool_)  # whole 64-bit words once packed
    above[n:] = False
    bound = np.float32(thresholds) if np.ndim(thresholds) == 0 else np.asarray(thresholds, np.float32)[:, None]
    np.greater_equal(scores, bound, out=above[:n].reshape(scores.shape))
    return np.packbits(above, bitorder="little").view(np.uint64)


class ThresholdSelection:
    """Survivors of a guessed threshold over column tiles, then each row's exact top-K among them.

    Keys pack ``(row, descending score, column)`` into one uint64, so one sort orders every row at once; this
    needs ``bits(rows - 1) + 32 + bits(n_cols - 1) <= 64`` (see :meth:`fits`). With ``shifted``, the tiles hold
    ``score - threshold`` (:meth:`ThresholdGuess.shifted_queries`): survivors are the entries ``>= 0``, and their
    threshold is added back to report their score.
    """

    def __init__(
        self, thresholds: np.ndarray, n_cols: int, k: int, workspace: Workspace, shifted: bool = False
    ) -> None:
        self.rows, self.k, self._work, self._shifted = len(thresholds), k, workspace, shifted
        self._thresholds = np.asarray(thresholds, dtype=np.float32)
        self._col_bits = max(1, (n_cols - 1).bit_length())
        self._parts: list[np.ndarray] = []

    @staticmethod
    def fits(rows: int, n_cols: int) -> bool:
        """Whether ``rows`` x ``n_cols`` keys fit in 64 bits."""
        return max(1, (rows - 1).bit_length()) + 32 + max(1, (n_cols - 1).bit_length()) <= 64

    def add(self, scores: np.ndarray, offset: int) -> None:
        """Take the tile ``scores`` (float32 ``[rows, width]``, C-contiguous) of columns ``offset:offset+width``."""
        from lambdarec.model.survivors import survivor_keys  # numba: loaded by the batch layer only

        words = hit_words(scores, 0.0 if self._shifted else self._thresholds, self._work)
        # + threshold: the score back from a shifted one
        adds = self._thresholds if self._shifted else np.zeros(self.rows, np.float32)
        self._parts.append(survivor_keys(words, scores, adds, offset, self._col_bits))

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """int32 ``[rows, k]`` columns, float32 ``[rows, k]`` scores, best first, and the bool ``[rows]`` of rows
        that had fewer than ``k`` survivors (``-1`` / ``-inf``): they must be selected again."""
        from lambdarec.model.survivors import best_of_rows

        keys = np.concatenate([np.zeros(0, np.uint64), *self._parts]) if len(self._parts) != 1 else self._parts[0]
        keys.sort()  # by row, then descending score, then column: a row's best are its first k keys
        return best_of_rows(keys, self.rows, self.k, self._col_bits)
