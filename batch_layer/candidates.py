"""Every user's top-K candidates, already-seen items excluded, streamed block by block.

Searchers (one interface, picked by :func:`make_searcher` from ``batch.index.kind`` and ``batch.device``):

* :class:`ExactSearcher`: CPU, exact. Chunks of users run on a thread pool; each chunk is a single-threaded
  sgemm per item tile followed by a selection that numpy runs without the GIL, so both use every core: the first
  chunk by :class:`lambdarec.model.topk.RunningTopK`, the others only over the scores above a threshold learnt
  from it (:mod:`lambdarec.model.topk_threshold`).
* :class:`batch_layer.model_index.TorchSearcher`: CUDA, exact (matmul + ``topk`` on the GPU).
* :class:`batch_layer.model_index.FaissSearcher`: approximate (FAISS IVF or HNSW, inner product), whose recall@K
  against exact :func:`candidate_recall` measures for the manifest.

Example
-------
>>> u = np.eye(3, dtype=np.float32); seen = sp.identity(3, format="csr", dtype=np.float32)
>>> [b.items.tolist() for b in iter_candidates(u, u, seen, k=1, block=2)]
[[[1], [0]], [[0]]]
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

import numpy as np
import scipy.sparse as sp

from batch_layer.train.device import resolve_device, resolve_threads
from lambdarec.logs import get_logger
from lambdarec.model.scoring import CHUNK_ROWS, Exclusions, guessed_topk_scores, redo_short
from lambdarec.model.topk import Workspace
from lambdarec.model.topk_threshold import ThresholdGuess, shifted_transpose
from lambdarec.settings import BatchSettings

log = get_logger(__name__)


class CandidateBlock(NamedTuple):
    """One block of users' candidates: ``users`` int64 ``[b]``, ``items`` int32 ``[b, k]``, ``scores`` float32
    ``[b, k]`` best first; ``-1`` / ``-inf`` pad users with fewer than ``k`` unseen items."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray


class Searcher(Protocol):
    """Top-K search over fixed item factors."""

    def search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """int32 item indices and float32 scores ``[len(user_vectors), k]``, seen items excluded, best first."""
        ...


@functools.cache
def _blas_controller():  # type: ignore[no-untyped-def]
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class ExactSearcher:
    """Exact inner-product top-K on the CPU, chunks of users spread over ``threads`` threads.

    Each thread holds one score tile of ``tile_mb`` MiB (``batch.score_tile_mb``; default 64) plus a quarter of
    that for its mask: the peak memory, whatever the number of users.

    Example
    -------
    >>> s = ExactSearcher(np.eye(2, dtype=np.float32), threads=1)
    >>> s.search(np.array([[0.0, 1.0]], np.float32), None, 1)[0].tolist()
    [[1]]
    """

    def __init__(self, item_factors: np.ndarray, threads: int = 0, tile_mb: float | None = None) -> None:
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.tile_elements = None if tile_mb is None else max(1, int(tile_mb * (1 << 20)) // 4)
        # [items.T; 1], shared with the guesses (ThresholdGuess); its first rows are the plain transpose.
        self._shifted_t = shifted_transpose(self.item_factors)
        self._items_t = self._shifted_t[:-1]
        self.threads = resolve_threads(threads)
        self._local = threading.local()  # one Workspace per worker thread
        self._guesses: dict[int, ThresholdGuess] = {}  # per k, shared by the threads; learns across blocks
        self._pool: ThreadPoolExecutor | None = None  # kept across blocks, so workspaces are reused

    def _workspace(self) -> Workspace:
        work = getattr(self._local, "workspace", None)
        if work is None:
            work = self._local.workspace = Workspace()
        return work

    def search(self, user_vectors: np.ndarray, seen: Exclusions | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.ascontiguousarray(user_vectors, dtype=np.float32)
        n_users = len(users)
        out_items = np.empty((n_users, k), dtype=np.int32)
        out_scores = np.empty((n_users, k), dtype=np.float32)
        # Full chunks amortise the sgemm best, but every thread needs a few chunks per block to stay busy.
        step = max(32, min(CHUNK_ROWS, -(-n_users // (4 * self.threads))))
        guess = self._guesses.get(k)
        if guess is None:
            guess = self._guesses[k] = ThresholdGuess(self.item_factors, k, shifted_items_t=self._shifted_t)

        short = np.zeros(n_users, dtype=bool)

        def run(start: int) -> None:
            stop = min(start + step, n_users)
            excl = None if seen is None else Exclusions(seen.indptr[start : stop + 1], seen.indices)
            out_items[start:stop], out_scores[start:stop], short[start:stop] = guessed_topk_scores(
                users[start:stop],
                self._items_t,
                k,
                excl,
                workspace=self._workspace(),
                tile_elements=self.tile_elements,
                guess=guess,
            )

        starts = range(0, n_users, step)
        # One BLAS thread per chunk: our threads already fill the cores, nested BLAS threads would fight them.
        with _blas_controller().limit(limits=1, user_api="blas"):
            if self.threads == 1 or len(starts) == 1:
                for start in starts:
                    run(start)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="topk")
                list(self._pool.map(run, starts))  # list() re-raises a worker's exception here
            # rows the guess was too high for, together: a pass behind a lower guess, then full rows for any left
            redo_short(short, users, self._items_t, k, seen, out_items, out_scores, workspace=self._workspace(),
                       tile_elements=self.tile_elements, guess=guess)  # fmt: skip
        return out_items, out_scores


def _check_inputs(user_factors: np.ndarray, item_factors: np.ndarray, seen_csr: sp.csr_matrix | None) -> None:
    if user_factors.ndim != 2 or item_factors.ndim != 2 or user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(
            f"user_factors {user_factors.shape} and item_factors {item_factors.shape} must be 2-D with the "
            "same number of factors"
        )
    if seen_csr is None:
        return
    if not sp.issparse(seen_csr) or seen_csr.format != "csr":
        raise TypeError(f"seen_csr must be a scipy.sparse CSR matrix (users x items); got {type(seen_csr)}")
    expected = (user_factors.shape[0], item_factors.shape[0])
    if seen_csr.shape != expected:
        raise ValueError(f"seen_csr has shape {seen_csr.shape}; expected (n_users, n_items) = {expected}")


def iter_candidates(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen_csr: sp.csr_matrix | None,
    k: int,
    block: int,
    *,
    threads: int = 0,
    searcher: Searcher | None = None,
    users: np.ndarray | None = None,
) -> Iterator[CandidateBlock]:
    """Yield every user's top-``k`` unseen items, ``block`` users at a time; memory is bounded by the block.

    Parameters
    ----------
    user_factors, item_factors
        float32 ``[n_users, f]`` and ``[n_items, f]``.
    seen_csr
        CSR ``[n_users, n_items]``: each user's stored items are never returned. ``None`` excludes nothing.
    k
        Candidates per user (``batch.top_k``).
    block
        Users per yielded block (``batch.user_block``).
    threads
        CPU threads of the default exact searcher (0: every core).
    searcher
        A :class:`Searcher` from :func:`make_searcher`; default exact on the CPU.
    users
        Only these user indices (ascending not required); default all.

    Yields
    ------
    CandidateBlock
        ``(users, items, scores)``; unpacks as a 3-tuple.

    Example
    -------
    >>> u = np.array([[1.0, 0.0]], np.float32); y = np.array([[1.0, 0.0], [0.5, 0.0]], np.float32)
    >>> next(iter_candidates(u, y, None, k=2, block=10)).items.tolist()
    [[0, 1]]
    """
    if k < 1 or block < 1:
        raise ValueError(f"k and block must be >= 1; got k={k}, block={block}")
    user_factors = np.asarray(user_factors, dtype=np.float32)
    item_factors = np.asarray(item_factors, dtype=np.float32)
    _check_inputs(user_factors, item_factors, seen_csr)
    search = searcher or ExactSearcher(item_factors, threads)
    contiguous = users is None  # then blocks are row ranges: views, no copies
    order = np.arange(len(user_factors)) if users is None else np.asarray(users, dtype=np.int64)
    for start in range(0, len(order), block):
        ids = order[start : start + block]
        vectors = user_factors[start : start + len(ids)] if contiguous else user_factors[ids]
        excl = _seen_rows(seen_csr, ids, contiguous)
        items, scores = search.search(vectors, excl, k)
        yield CandidateBlock(ids, items, scores)


def _seen_rows(seen_csr: sp.csr_matrix | None, ids: np.ndarray, contiguous: bool) -> Exclusions | None:
    if seen_csr is None:
        return None
    if contiguous:
        return Exclusions(seen_csr.indptr[ids[0] : ids[-1] + 2], seen_csr.indices)
    rows = seen_csr[ids]
    return Exclusions(rows.indptr, rows.indices)


def make_searcher(item_factors: np.ndarray, settings: BatchSettings) -> Searcher:
    """The searcher ``batch.index.kind`` and ``batch.device`` ask for.

    ``device = "cuda"`` scores exactly with torch on the GPU (or FAISS GPU for ``ivf``); ``"auto"`` does so
    when a CUDA device is present and torch is installed, else stays on the CPU.

    Example
    -------
    >>> type(make_searcher(np.eye(2, dtype=np.float32), BatchSettings(device="cpu"))).__name__
    'ExactSearcher'
    """
    device = resolve_device(settings.device)
    if settings.index.kind != "exact":
        from batch_layer.model_index import FaissSearcher

        return FaissSearcher(item_factors, settings, use_gpu=device == "cuda")
    if device == "cuda":
        from batch_layer.model_index import TorchSearcher, torch_cuda_ready

        if settings.device == "cuda" or torch_cuda_ready():
            return TorchSearcher(item_factors)
        log.warning("candidates.cpu_fallback", reason="CUDA present but torch is not installed")
    return ExactSearcher(item_factors, settings.threads, settings.score_tile_mb)


def candidate_recall(
    searcher: Searcher,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    seen_csr: sp.csr_matrix | None,
    k: int,
    sample: int,
    seed: int = 0,
    threads: int = 0,
) -> float:
    """Recall@``k`` of ``searcher`` against exact search on ``sample`` users drawn with ``seed``.

    The share of the exact top-``k`` items (seen excluded) that the searcher also returns; 1.0 for an exact one.

    Example
    -------
    >>> y = np.eye(3, dtype=np.float32)
    >>> candidate_recall(ExactSearcher(y), y, y, None, k=2, sample=3)
    1.0
    """
    user_factors = np.asarray(user_factors, dtype=np.float32)
    _check_inputs(user_factors, np.asarray(item_factors), seen_csr)
    rng = np.random.default_rng(seed)
    n_users = len(user_factors)
    ids = np.sort(rng.choice(n_users, size=min(sample, n_users), replace=False))
    excl = _seen_rows(seen_csr, ids, contiguous=False)
    exact, _ = ExactSearcher(item_factors, threads).search(user_factors[ids], excl, k)
    approx, _ = searcher.search(user_factors[ids], excl, k)
    n = len(item_factors)
    rows = np.arange(len(ids))[:, None]
    exact_keys = (rows * n + exact)[exact >= 0]
    approx_keys = (rows * n + approx)[approx >= 0]
    if exact_keys.size == 0:
        return 1.0
    return float(np.intersect1d(exact_keys, approx_keys).size / exact_keys.size)
