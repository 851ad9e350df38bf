"""All-users candidates: exact, seen items never returned, independent of block size, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from batch_layer.candidates import ExactSearcher, candidate_recall, iter_candidates, make_searcher
from batch_layer.train.device import cuda_available
from lambdarec.settings import BatchSettings
from tests.numeric import assert_same_ranking, assert_scores_close, exact_scores


def random_case(users: int = 700, items: int = 1500, f: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    user_factors = rng.standard_normal((users, f)).astype(np.float32)
    item_factors = rng.standard_normal((items, f)).astype(np.float32)
    counts = np.minimum(rng.zipf(1.6, users), items // 3)
    rows = np.repeat(np.arange(users), counts)
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, rng.integers(0, items, rows.size))), (users, items))
    seen.sum_duplicates()
    return user_factors, item_factors, seen


def brute_force(user_factors, item_factors, seen, k):
    scores = user_factors @ item_factors.T
    scores[seen.toarray() != 0] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def collect(blocks):
    users, items, scores = zip(*blocks, strict=True)
    return np.concatenate(users), np.concatenate(items), np.concatenate(scores)


@pytest.mark.parametrize("threads", [1, 3])
def test_exact_candidates_equal_brute_force_and_skip_seen_items(threads: int) -> None:
    u, y, seen = random_case()
    users, items, scores = collect(iter_candidates(u, y, seen, 60, 256, threads=threads))
    np.testing.assert_array_equal(users, np.arange(len(u)))
    assert_same_ranking(items, brute_force(u, y, seen, 60), exact_scores(u, y, seen))
    assert not seen[np.repeat(np.arange(len(u)), 60), items.ravel()].any()
    assert (np.diff(scores, axis=1) <= 0).all()
    assert_scores_close(scores, np.take_along_axis(u @ y.T, items, 1))


def test_result_does_not_depend_on_the_block_size() -> None:
    # BLAS may round differently per block size and thread count: ids agree except near-ties, scores within 1e-4.
    u, y, seen = random_case(seed=1)
    ref_users, ref_items, ref_scores = collect(iter_candidates(u, y, seen, 40, len(u), threads=1))
    exact = exact_scores(u, y, seen)
    for block in (1, 7, 100, 333):
        users, items, scores = collect(iter_candidates(u, y, seen, 40, block, threads=2))
        np.testing.assert_array_equal(users, ref_users)
        assert_same_ranking(items, ref_items, exact, err_msg=f"block {block}:")
        assert_scores_close(scores, ref_scores, err_msg=f"block {block}")


def test_users_subset_and_users_who_have_seen_everything() -> None:
    u, y, _ = random_case(users=5, items=30)
    dense = np.zeros((5, 30), np.float32)
    dense[2, :] = 1.0
    dense[4, :25] = 1.0
    seen = sp.csr_matrix(dense)
    users, items, scores = collect(iter_candidates(u, y, seen, 10, 2, users=np.array([4, 2, 0])))
    assert users.tolist() == [4, 2, 0]
    assert set(items[0, :5]) == set(range(25, 30)) and (items[0, 5:] == -1).all()
    assert (items[1] == -1).all() and np.isneginf(scores[1]).all()
    assert_same_ranking(items[2], brute_force(u[:1], y, seen[:1], 10)[0], exact_scores(u[:1], y, seen[:1]))


def test_inputs_are_checked_with_a_clear_message() -> None:
    u, y, seen = random_case(users=4, items=9)
    with pytest.raises(ValueError, match="expected \\(n_users, n_items\\)"):
        next(iter_candidates(u, y, seen[:3], 2, 2))
    with pytest.raises(ValueError, match="same number of factors"):
        next(iter_candidates(u[:, :3], y, seen, 2, 2))
    with pytest.raises(TypeError, match="CSR"):
        next(iter_candidates(u, y, seen.toarray(), 2, 2))
    with pytest.raises(ValueError, match="block"):
        next(iter_candidates(u, y, seen, 2, 0))


def test_hnsw_recall_is_reported_and_high_on_a_small_case() -> None:
    u, y, seen = random_case(users=400, items=2000, seed=2)
    searcher = make_searcher(y, BatchSettings(index={"kind": "hnsw", "hnsw_ef_search": 128}, device="cpu"))
    recall = candidate_recall(searcher, u, y, seen, 50, sample=200, seed=0)
    assert 0.9 < recall <= 1.0
    _, items, _ = collect(iter_candidates(u, y, seen, 50, 128, searcher=searcher))
    valid = items >= 0
    assert valid.all(axis=1).mean() > 0.95
    rows = np.repeat(np.arange(len(u)), 50).reshape(items.shape)
    assert not seen[rows[valid], items[valid]].any()


def test_ivf_search_never_returns_seen_items_and_exact_recall_is_one() -> None:
    u, y, seen = random_case(users=300, items=2000, seed=3)
    ivf = make_searcher(y, BatchSettings(index={"kind": "ivf", "ivf_nlist": 16, "ivf_nprobe": 16}, device="cpu"))
    _, items, _ = collect(iter_candidates(u, y, seen, 30, 64, searcher=ivf))
    rows = np.repeat(np.arange(len(u)), 30).reshape(items.shape)
    assert (items >= 0).all() and not seen[rows.ravel(), items.ravel()].any()
    assert candidate_recall(ivf, u, y, seen, 30, sample=100) == pytest.approx(1.0)  # every cell probed
    assert candidate_recall(ExactSearcher(y), u, y, seen, 30, sample=100) == 1.0


def _peak_bytes(users: int, block: int) -> int:
    u, y, seen = random_case(users=users, items=3000, f=16, seed=4)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in iter_candidates(u, y, seen, 50, block, threads=1):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_number_of_users() -> None:
    small, large = _peak_bytes(1000, 256), _peak_bytes(8000, 256)
    assert large < 1.25 * small + (1 << 20), (small, large)


def test_torch_searcher_code_path_equals_exact_on_the_cpu() -> None:
    pytest.importorskip("torch", reason="torch is not installed (make setup-dev installs the torch extra)")
    from batch_layer.model_index import TorchSearcher

    u, y, seen = random_case(users=300, items=800, seed=5)
    searcher = TorchSearcher(y, device="cpu")
    _, items, scores = collect(iter_candidates(u, y, seen, 25, 128, searcher=searcher))
    exact = brute_force(u, y, seen, 25)
    assert_same_ranking(items, exact, exact_scores(u, y, seen))
    assert_scores_close(scores, np.take_along_axis(u @ y.T, exact, 1))
    tiny = TorchSearcher(y[:5], device="cpu").search(u[:2], None, 8)[0]
    assert (tiny[:, 5:] == -1).all()


@pytest.mark.parametrize("users_per_step", [None, 3])
def test_torch_searchers_chunked_selection_is_exact_where_the_best_items_crowd_one_chunk(
    users_per_step: int | None, monkeypatch
) -> None:
    # 1,003 items (not a multiple of the chunk), k = 12: the selection cuts the items into chunks of 10. The 12
    # best unseen items of every user sit side by side, and some users have fewer than k unseen items left.
    # With 3 users per device step, each block of 16 users runs as 6 pipelined steps, the last one short.
    pytest.importorskip("torch", reason="torch is not installed (make setup-dev installs the torch extra)")
    import batch_layer.torch_search as torch_search
    from batch_layer.model_index import TorchSearcher

    if users_per_step:
        monkeypatch.setattr(torch_search, "_GPU_STEP_ELEMENTS", 1010 * users_per_step)

    rng = np.random.default_rng(3)
    users, items, k = 40, 1003, 12
    y = np.zeros((items, 4), np.float32)
    y[:, 0] = rng.random(items) * 0.1
    y[500:520, 0] = np.linspace(2.0, 1.0, 20)  # the best 20 items: two neighbouring chunks
    u = np.abs(rng.standard_normal((users, 4)).astype(np.float32)) + 0.1
    dense = np.zeros((users, items), np.float32)
    dense[::3, 500:520:2] = 1  # every third user has seen half of the best 20
    dense[1, :] = 1
    dense[1, [7, 900, 1002]] = 0  # user 1 has 3 unseen items left: the rest is padding
    seen = sp.csr_matrix(dense)
    searcher = TorchSearcher(y, device="cpu")
    assert searcher._chunk(k) > 1  # the two-stage path is the one under test
    _, got, scores = collect(iter_candidates(u, y, seen, k, 16, searcher=searcher))
    exact = exact_scores(u, y, seen)
    want = brute_force(u, y, seen, k)
    want[np.isneginf(np.take_along_axis(exact, want, 1))] = -1  # fewer unseen items than k: padding
    assert_same_ranking(got, want, exact)
    assert sorted(got[1, :3].tolist()) == [7, 900, 1002] and (got[1, 3:] == -1).all()
    assert np.isneginf(scores[1, 3:]).all()
    assert_scores_close(scores[got >= 0], (u @ y.T)[np.nonzero(got >= 0)[0], got[got >= 0]])


def test_auto_device_falls_back_to_the_cpu_without_torch(monkeypatch) -> None:
    import batch_layer.candidates as candidates
    import batch_layer.model_index as model_index

    monkeypatch.setattr(candidates, "resolve_device", lambda requested: "cuda")
    monkeypatch.setattr(model_index, "torch_cuda_ready", lambda: False)
    searcher = make_searcher(np.eye(3, dtype=np.float32), BatchSettings(device="auto", score_tile_mb=1))
    assert isinstance(searcher, ExactSearcher) and searcher.tile_elements == 1 << 18


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA device")
def test_explicit_cuda_without_a_device_is_a_clear_error(monkeypatch) -> None:
    import batch_layer.candidates as candidates

    monkeypatch.setattr(candidates, "resolve_device", lambda requested: "cuda")
    with pytest.raises(RuntimeError, match=r"batch\.device = 'cuda'"):
        make_searcher(np.eye(3, dtype=np.float32), BatchSettings(device="cuda"))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_explicit_cuda_faiss_index_that_cannot_use_a_gpu_is_a_clear_error(kind: str) -> None:
    import faiss

    if kind == "ivf" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("this FAISS build runs IVF on a GPU here")
    y = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    settings = BatchSettings(device="cuda", index={"kind": kind, "ivf_nlist": 4})
    with pytest.raises(RuntimeError, match=r"batch\.device = 'cuda'.*FAISS"):
        make_searcher(y, settings)  # used to search on the CPU without a word


def test_auto_device_faiss_index_without_a_gpu_searches_on_the_cpu_and_says_so(monkeypatch) -> None:
    import batch_layer.candidates as candidates
    import batch_layer.model_index as model_index

    monkeypatch.setattr(candidates, "resolve_device", lambda requested: "cuda")
    monkeypatch.setattr(model_index, "faiss_gpu_problem", lambda: "this FAISS build has no GPU support")
    warned: list[dict] = []
    monkeypatch.setattr(model_index.log, "warning", lambda event, **kw: warned.append({"event": event, **kw}))
    y = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    searcher = make_searcher(y, BatchSettings(device="auto", index={"kind": "ivf", "ivf_nlist": 4}))
    assert searcher.search(y[:2], None, 3)[0].shape == (2, 3)
    assert warned and warned[0]["event"] == "candidates.cpu_fallback" and "FAISS" in warned[0]["reason"]


def test_a_faiss_gpu_build_that_cannot_search_on_this_gpu_is_refused_with_the_test_searchs_error(monkeypatch) -> None:
    # A FAISS GPU wheel without code for the GPU aborts the process at its first search (faiss-gpu-cu12 on a
    # Hopper GPU: "CUDA error 209 no kernel image is available"). Here FAISS claims a GPU build and a device, and
    # the probe's child process, running the real (CPU-only) FAISS, fails its search: the request is refused with
    # the child's error, and this process never searches.
    import faiss

    import batch_layer.model_index as model_index

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    model_index.faiss_gpu_problem.cache_clear()
    try:
        problem = model_index.faiss_gpu_problem()
        assert problem is not None and "cannot search on this GPU" in problem and "GpuIndexFlatIP" in problem
        assert model_index.faiss_gpus() == 0
        y = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
        with pytest.raises(RuntimeError, match="cannot be honoured: this FAISS build cannot search on this GPU"):
            make_searcher(y, BatchSettings(device="cuda", index={"kind": "ivf", "ivf_nlist": 4}))
    finally:
        model_index.faiss_gpu_problem.cache_clear()


@pytest.mark.parametrize(
    ("stderr", "timeout", "says"),
    [
        ("CUDA error 209 no kernel image is available for execution on the device\n", False, "GPU generations"),
        ("AssertionError: wrong neighbours\n", False, "gave wrong results"),
        ("RuntimeError: CUDA error: out of memory\n", False, "out of memory"),
        ("", True, "did not finish in 120 s"),
    ],
)
def test_the_faiss_gpu_refusal_names_what_its_test_search_met(
    monkeypatch, stderr: str, timeout: bool, says: str
) -> None:
    import subprocess

    import faiss

    import batch_layer.model_index as model_index

    def child(args, **kwargs):
        if timeout:
            raise subprocess.TimeoutExpired(args, kwargs.get("timeout", 0))
        return subprocess.CompletedProcess(args, -6, "", "Faiss assertion failed\n" + stderr)

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(model_index.subprocess, "run", child)
    model_index.faiss_gpu_problem.cache_clear()
    try:
        problem = model_index.faiss_gpu_problem()
    finally:
        model_index.faiss_gpu_problem.cache_clear()
    assert problem is not None and says in problem and "batch.index.kind = 'exact'" in problem
    if stderr:
        assert stderr.strip() in problem and "status -6" in problem


_FUSED_CHECK = """
import sys
import numpy as np, scipy.sparse as sp
sys.path.insert(0, ".")
import batch_layer.torch_search as torch_search
from batch_layer.candidates import iter_candidates
from batch_layer.model_index import TorchSearcher
from tests.numeric import assert_same_ranking, assert_scores_close, exact_scores
from tests.unit.batch_model.test_candidates import brute_force, collect

rng = np.random.default_rng(4)
users, items, k = 50, 2500, 8
u = rng.standard_normal((users, 24)).astype(np.float32)
y = rng.standard_normal((items, 24)).astype(np.float32)
y[1200:1210] *= 4  # many users' best items crowd two chunks
dense = (rng.random((users, items)) < 0.03).astype(np.float32)
dense[::4, 1200:1210] = 1
dense[7, :] = 1
dense[7, [0, 2499]] = 0  # 2 unseen items left, and the last item sits in the last, part-filled tile
seen = sp.csr_matrix(dense)
torch_search._GPU_STEP_ELEMENTS = 6 * 2 * 80 + 6 * 32 * k  # 6 users per step: pipelined, the last step short
searcher = TorchSearcher(y, device="cpu", fused=True)
assert searcher._fused_selector(k) is not None
_, got, scores = collect(iter_candidates(u, y, seen, k, 20, searcher=searcher))
exact = exact_scores(u, y, seen)
want = brute_force(u, y, seen, k)
want[np.isneginf(np.take_along_axis(exact, want, 1))] = -1
assert_same_ranking(got, want, exact)
assert sorted(got[7, :2].tolist()) == [0, 2499] and (got[7, 2:] == -1).all() and np.isneginf(scores[7, 2:]).all()
live = got >= 0
assert_scores_close(scores[live], (u @ y.T)[np.nonzero(live)[0], got[live]])
# the best item of user 0 excluded twice (a caller's list with a repeat): still excluded, its neighbours kept
from lambdarec.model.scoring import Exclusions
best = int(np.argmax(u[0] @ y.T))
twice = searcher.search(u[:1], Exclusions(np.array([0, 2]), np.array([best, best])), k)[0][0]
assert best not in twice.tolist() and twice.tolist() == [i for i in np.argsort(-(u[0] @ y.T)) if i != best][:k]
# 150 users in one step: three tiles of users (the grid's second axis), the last one part-filled
u2 = rng.standard_normal((150, 24)).astype(np.float32)
seen2 = sp.random(150, items, density=0.02, format="csr", random_state=5, dtype=np.float32)
seen2.data[:] = 1
torch_search._GPU_STEP_ELEMENTS = 1 << 28
_, got2, _ = collect(iter_candidates(u2, y, seen2, k, 150, searcher=TorchSearcher(y, device="cpu", fused=True)))
assert_same_ranking(got2, brute_force(u2, y, seen2, k), exact_scores(u2, y, seen2))
print("fused ok")
"""


def test_the_triton_selector_is_exact_run_by_tritons_interpreter() -> None:
    # The GPU kernels run on the CPU under TRITON_INTERPRET=1 (in a fresh process: Triton reads it at import).
    pytest.importorskip("torch", reason="torch is not installed (make setup-dev installs the torch extra)")
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None:  # found, not imported: Triton stays out of this process
        pytest.skip("triton is not installed (it comes with torch's CUDA wheels on x86-64)")

    run = subprocess.run(
        [sys.executable, "-c", _FUSED_CHECK],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0 and "fused ok" in run.stdout, run.stderr[-3000:]


def test_asking_for_the_triton_selector_where_it_cannot_run_is_an_error(monkeypatch) -> None:
    pytest.importorskip("torch", reason="torch is not installed (make setup-dev installs the torch extra)")
    from batch_layer import gpu_select
    from batch_layer.model_index import TorchSearcher

    monkeypatch.setattr(gpu_select, "available", lambda: False)
    u, y, seen = random_case(users=20, items=3000, seed=2)
    with pytest.raises(RuntimeError, match="fused GPU top-K asked for"):
        TorchSearcher(y, device="cpu", fused=True).search(u, None, 10)
    # by default the CPU device uses the torch selection, and gives the exact answer
    none_seen = sp.csr_matrix(seen.shape, dtype=np.float32)
    got = TorchSearcher(y, device="cpu").search(u, None, 10)[0]
    assert_same_ranking(got, brute_force(u, y, none_seen, 10), exact_scores(u, y, none_seen))


def test_the_triton_selector_steps_aside_for_wide_factors_and_a_failed_first_launch(monkeypatch) -> None:
    pytest.importorskip("torch", reason="torch is not installed (make setup-dev installs the torch extra)")
    from batch_layer import gpu_select
    from batch_layer.model_index import TorchSearcher

    monkeypatch.setattr(gpu_select, "available", lambda: True)
    rng = np.random.default_rng(6)
    u, y = rng.standard_normal((30, 100)).astype(np.float32), rng.standard_normal((3000, 100)).astype(np.float32)
    none_seen = sp.csr_matrix((30, 3000), dtype=np.float32)
    exact = exact_scores(u, y, none_seen)
    import batch_layer.torch_search as torch_search

    warned: list[dict] = []
    monkeypatch.setattr(torch_search.log, "warning", lambda event, **kw: warned.append({"event": event, **kw}))
    # 100 factors: wider than the kernel's tile; asked for by name it is an error, by default the torch selection,
    # chosen before any launch (no fallback logged, the items never copied for the kernel)
    with pytest.raises(RuntimeError, match="cannot serve this search: 100 factors"):
        TorchSearcher(y, device="cpu", fused=True).search(u, None, 10)
    wide = TorchSearcher(y, device="cpu")
    wide.fused = None  # the default on a CUDA device
    assert_same_ranking(wide.search(u, None, 10)[0], brute_force(u, y, none_seen, 10), exact)
    assert warned == [] and wide._fused.items is None and not wide._fused_ran

    # a first launch that fails (no C compiler for Triton's driver, say): logged, then the torch selection
    def fail(*args, **kwargs):
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(gpu_select.FusedSelector, "select", fail)
    u16, y16 = u[:, :16].copy(), y[:, :16].copy()
    searcher = TorchSearcher(y16, device="cpu")
    searcher.fused = None  # the default on a CUDA device: the Triton selector where it runs
    got = searcher.search(u16, None, 10)[0]
    assert_same_ranking(got, brute_force(u16, y16, none_seen, 10), exact_scores(u16, y16, none_seen))
    assert warned == [{"event": "candidates.gpu_select_fallback", "reason": "RuntimeError: Failed to find C compiler"}]
    assert searcher.search(u16, None, 10)[0].shape == (30, 10) and len(warned) == 1  # decided once
    assert searcher._fused is None  # the kernel's copy of the items is let go
    with pytest.raises(RuntimeError, match="C compiler"):
        TorchSearcher(y16, device="cpu", fused=True).search(u16, None, 10)
