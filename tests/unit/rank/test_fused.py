"""The fused merge kernel (``lambdarec.rank.fused``) ranks each request as the numpy steps do: the same items in
the same order, the same sources, reasons and components (scores within float32 rounding: the session's cosine is
summed in another order), under rules, feedback, MMR and explain; one compiled signature serves every caller; a
non-finite input is left to the numpy steps, which count it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace

import msgspec
import numpy as np
import pytest

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank import fused, kernel, one
from lambdarec.rank.merge import MergeInput, MergeWeights, merge
from lambdarec.rank.pool import Ask, prepare
from lambdarec.rank.trending import TrendingScores
from tests.factories import snapshot_model
from tests.unit.rank.test_merge_many import NOW, _requests, _same


@pytest.fixture(autouse=True)
def _loaded() -> None:
    """Outside serving the kernel runs once something loads it: these tests do."""
    assert kernel.load()


def _both(  # type: ignore[no-untyped-def]
    inp: MergeInput, w: MergeWeights, k: int, offset: int, explain: bool, monkeypatch: pytest.MonkeyPatch
):
    """The request's list from the kernel, and from the numpy steps."""
    assert kernel.kernel() is not None
    fused_list = merge(inp, w, k, offset, explain)
    monkeypatch.setattr(kernel, "ENABLED", False)
    steps = merge(inp, w, k, offset, explain)
    monkeypatch.setattr(kernel, "ENABLED", True)
    return fused_list, steps


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_the_kernel_gives_each_request_the_numpy_steps_list(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Varied requests (see test_merge_many), a third under catalog rules, some users with dislikes and
    impressions that demote: every one is ranked by the kernel, and gets the numpy steps' list (the session's
    cosine is summed in another order than BLAS's, so scores compare within float32 rounding)."""
    rng = np.random.default_rng(seed)
    inputs, weights, ks, offsets, explains = _requests(seed)
    for j, inp in enumerate(inputs):
        if rng.random() < 0.3:
            inputs[j] = replace(inp, eligible=rng.random(len(inp.model.item_ids)) < 0.7)
        if inp.fresh is not None and rng.random() < 0.3:
            items = [f"i{i}" for i in rng.choice(len(inp.model.item_ids), 3, replace=False)]
            fresh = msgspec.structs.replace(inp.fresh, disliked={items[0]: NOW - 5.0},
                                            shown={items[1]: [NOW - 9.0, NOW - 4.0]})  # fmt: skip
            inputs[j] = replace(inputs[j], fresh=fresh)
    ranked = 0
    for inp, w, k, offset, explain in zip(inputs, weights, ks, offsets, explains, strict=True):
        ask = Ask(inp, w, k, offset, explain)
        assert one._rank_fused(fused.rank_fused, ask, prepare(ask)) is not None  # the kernel took it
        fused_list, steps = _both(inp, w, k, offset, explain, monkeypatch)
        _same(steps, fused_list)  # two items may swap only where their scores are within float32 rounding
        ranked += len(fused_list)
    assert ranked > 100


def test_ties_at_the_speed_sources_last_place_go_to_the_lowest_indices() -> None:
    """Ten items score alike for the fresh vector and three fit the speed source: items 5, 6 and 7 (the lowest
    indices among them) are pooled, in popularity order, every time (argpartition leaves that choice open)."""
    model = snapshot_model(40, 4, seed=3)
    factors = np.zeros((40, 4), dtype=np.float32)
    factors[:, 0] = -1.0
    factors[5:15, 0] = 1.0  # i5..i14 tie at the best score
    model = replace(model, item_factors=factors)
    fresh = FreshUser(user_id="u", vector=[1.0, 0.0, 0.0, 0.0], basis=model.version)
    w = MergeWeights(session=0.0, trending=0.0, speed_top_n=3)
    for _ in range(3):
        ranked = merge(MergeInput(model, fresh=fresh, now_s=NOW), w, k=3)
        assert [(r.item_id, r.source) for r in ranked] == [("i5", "speed"), ("i6", "speed"), ("i7", "speed")]


def test_one_compiled_signature_serves_every_caller() -> None:
    """Rows read from the store (read-only int32 and float32), rows built in memory (int64), catalog masks and
    trending given as arrays all reach the kernel as one signature: none compiles it again at a request."""
    fused.warm()
    before = len(fused._rank.signatures)
    model = snapshot_model(50, 8, seed=4)
    data = np.array([3, 1, 4], "<i4").tobytes() + np.array([0.9, 0.5, 0.1], "<f4").tobytes()
    stored = UserRow("u", np.frombuffer(data, "<i4", 3), np.frombuffer(data, "<f4", 3, 12),
                     np.frombuffer(data, "<i4", 1), np.ones(1, np.float32))  # fmt: skip
    built = UserRow("u", np.array([7, 8], np.int64), np.array([2.0, 1.0]), np.array([9], np.int64), np.ones(1))
    trending = np.linspace(0, 3, 50)  # float64, ordered by the merge
    fresh = FreshUser(user_id="u", recent=[("i2", NOW - 60.0)], events=[("i2", NOW - 60.0, 1.0)])
    for row in (stored, built):
        for eligible in (None, np.arange(50) % 3 != 0):
            inp = MergeInput(model, batch_row=row, fresh=fresh, session=[("i11", NOW)], trending=trending,
                             now_s=NOW, eligible=eligible)  # fmt: skip
            assert merge(inp, MergeWeights(), k=5)
    assert len(fused._rank.signatures) == before == 1


def test_a_non_finite_item_vector_is_left_to_the_numpy_steps() -> None:
    """A NaN in an item's factors: the kernel leaves the request, the numpy steps rank it (and count the
    defect); the list holds finite scores only."""
    model = snapshot_model(30, 4, seed=5)
    factors = model.item_factors.copy()
    factors[7] = np.nan
    model = replace(model, item_factors=factors)
    fresh = FreshUser(user_id="u", vector=[1.0, 0.5, -0.5, 0.2], basis=model.version)
    inp, w = MergeInput(model, fresh=fresh, now_s=NOW), MergeWeights(speed_top_n=30)
    ask = Ask(inp, w, 10, 0, False)
    assert one._rank_fused(fused.rank_fused, ask, prepare(ask)) is None
    ranked = merge(inp, w, k=10)
    assert len(ranked) == 10 and all(np.isfinite(r.score) for r in ranked)


def test_the_numpy_steps_alone_when_the_kernel_is_switched_off() -> None:
    """``LAMBDAREC_FUSED_MERGE=0``: a merge runs the numpy steps, and numba is never loaded."""
    code = (
        "import sys\n"
        "from lambdarec.rank import kernel\n"
        "print('LOADED', kernel.load())\n"
        "from lambdarec.rank.merge import MergeInput, MergeWeights, merge\n"
        "from tests.factories import snapshot_model\n"
        "print('ITEMS', len(merge(MergeInput(snapshot_model(20, 4)), MergeWeights(), k=5)))\n"
        "print('NUMBA', 'numba' in sys.modules)\n"
    )
    env = {**os.environ, "LAMBDAREC_FUSED_MERGE": "0"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "LOADED False" in proc.stdout, proc.stdout + proc.stderr
    assert "ITEMS 5" in proc.stdout and "NUMBA False" in proc.stdout, proc.stdout + proc.stderr


def test_serving_loads_the_kernel_in_the_background_and_ranks_with_numpy_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the kernel loads (held here until released), merges run the numpy steps; a second start does not
    load it twice; once loaded, merges run the kernel, and what was to follow the load (serving: a GC freeze) ran
    after it, once."""
    monkeypatch.setattr(kernel, "_state", {})
    release, real_warm = threading.Event(), fused.warm
    monkeypatch.setattr(fused, "warm", lambda: (release.wait(30), real_warm()))
    followed: list[object] = []
    thread = kernel.load_in_background(then=lambda: followed.append(kernel.kernel()))
    assert thread is not None and kernel.kernel() is None
    assert kernel.load_in_background(then=lambda: followed.append("again")) is None
    assert len(merge(MergeInput(snapshot_model(20, 4), now_s=NOW), MergeWeights(), k=5)) == 5
    assert not kernel.load(timeout_s=0.2)  # a load() meanwhile waits for the background one
    assert followed == []
    release.set()
    assert kernel.load(timeout_s=60)
    assert kernel.kernel() is fused.rank_fused
    assert followed == [fused.rank_fused]


def test_a_kernel_that_cannot_load_leaves_every_merge_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "_state", {})

    def broken() -> None:
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(fused, "warm", broken)
    assert not kernel.load()
    assert kernel.kernel() is None
    assert len(merge(MergeInput(snapshot_model(20, 4), now_s=NOW), MergeWeights(), k=5)) == 5


@pytest.mark.parametrize("where", ["batch row", "trending", "catalog mask"])
def test_an_index_outside_the_catalogue_is_left_to_the_numpy_steps(where: str) -> None:
    """numba does not check indices: a batch row naming item 99 of 30, trending scores over 40 items or a catalog
    mask over 40 are refused by the kernel, and the numpy steps raise the IndexError they always raised (serving
    checks rows first, and scores trending and builds its masks over the served snapshot's items)."""
    model = snapshot_model(30, 4, seed=6)
    row = UserRow("u", np.array([3, 99], np.int32), np.array([1.0, 0.5], np.float32), np.zeros(0, np.int32),
                  np.zeros(0, np.float32))  # fmt: skip
    inp = {
        "batch row": MergeInput(model, batch_row=row, now_s=NOW),
        "trending": MergeInput(model, trending=TrendingScores.of(np.linspace(1, 2, 40)), now_s=NOW),
        "catalog mask": MergeInput(model, eligible=np.ones(40, dtype=bool), now_s=NOW),
    }[where]
    w = MergeWeights()
    ask = Ask(inp, w, 5, 0, False)
    assert one._rank_fused(fused.rank_fused, ask, prepare(ask)) is None
    with pytest.raises(IndexError):
        merge(inp, w, k=5)


def test_trending_checked_for_one_catalogue_is_checked_again_for_another() -> None:
    """The same trending scores (40 items) serve a 40-item snapshot, then a 30-item one (not weighted, so only
    the order reaches the kernel): the second is refused, as a fresh check would refuse it, never read past."""
    trending = TrendingScores.of(np.linspace(1, 2, 40))
    w = MergeWeights(trending=0.0)
    for n_items, taken in ((40, True), (30, False)):
        ask = Ask(MergeInput(snapshot_model(n_items, 4, seed=7), trending=trending, now_s=NOW), w, 5, 0, False)
        assert (one._rank_fused(fused.rank_fused, ask, prepare(ask)) is not None) is taken
