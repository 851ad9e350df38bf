"""The block merge (``merge_many``) gives each request the list that ``merge`` alone gives it: the replay ranks
many requests in one block, serving ranks one, and both run the same code. Lists compare exactly except where two
items score within float32 rounding of each other (the block scores the fresh vectors in one matrix product and the
session against the seeds' weighted mean); scores compare within a tolerance."""

from __future__ import annotations

import random
from dataclasses import replace

import msgspec
import numpy as np
import pytest

from lambdarec.model.freshstate import solve
from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank import block
from lambdarec.rank.feedback import DemoteSettings
from lambdarec.rank.merge import MergeInput, MergeWeights, merge, merge_many
from lambdarec.rank.trending import TrendingScores
from tests.factories import snapshot_model

N_ITEMS, F, NOW = 60, 8, 50_000.0


def _requests(seed: int, n: int = 40) -> tuple[list[MergeInput], list[MergeWeights], list[int], list[int], list[bool]]:
    """Varied requests against one model: warm and unknown users, fresh states with and without a vector, sessions,
    trending, ``exclude``, several weights (MMR too), sizes and pages; the variants of one event share objects."""
    rng = random.Random(seed)
    model = snapshot_model(N_ITEMS, F, version="v1", seed=seed)
    inputs, weights, ks, offsets, explains = [], [], [], [], []
    for _ in range(n // 4):
        row = None
        if rng.random() < 0.6:
            cands = rng.sample(range(N_ITEMS), rng.randrange(1, 25))
            history = rng.sample(range(N_ITEMS), rng.randrange(0, 8))
            scores = np.sort(np.array([rng.uniform(0, 3) for _ in cands], np.float32))[::-1].copy()
            row = UserRow("u", np.array(cands, np.int32), scores, np.array(history, np.int32),
                          np.ones(len(history), np.float32))  # fmt: skip
        recent = [(f"i{rng.randrange(N_ITEMS + 5)}", NOW - rng.uniform(0, 7200)) for _ in range(rng.randrange(0, 6))]
        fresh = None
        if rng.random() < 0.7:
            fresh = FreshUser(user_id="u", events=[(i, t, 1.0) for i, t in recent], recent=recent)
            if rng.random() < 0.8:
                fresh = solve(fresh, model, row)
        session = [(f"i{rng.randrange(N_ITEMS)}", NOW - rng.uniform(0, 600)) for _ in range(rng.randrange(0, 4))]
        exclude = frozenset(f"i{rng.randrange(N_ITEMS)}" for _ in range(rng.randrange(0, 10)))
        counts = np.array([rng.choice([0.0, 0.0, rng.uniform(0, 9)]) for _ in range(N_ITEMS)], np.float32)
        trending = TrendingScores.of(counts) if rng.random() < 0.5 else counts
        for variant in range(4):  # like the replay's variants: shared row, fresh and exclude objects
            inputs.append(MergeInput(
                model,
                batch_row=row,
                fresh=None if variant == 0 else fresh,
                session=session if variant >= 2 else (),
                exclude=exclude,
                trending=trending if variant >= 2 else None,
                now_s=NOW,
            ))  # fmt: skip
            weights.append(MergeWeights(
                session=0.0 if variant < 2 else rng.choice([0.5, 1.5]),
                trending=0.0 if variant < 2 else rng.choice([0.0, 0.3]),
                mmr_lambda=0.3 if variant == 3 and rng.random() < 0.3 else 0.0,
                speed_top_n=rng.choice([10, 100]),
                neighbours_per_seed=rng.choice([3, 20]),
                trending_top_n=rng.choice([5, 50]),
            ))  # fmt: skip
            ks.append(rng.choice([1, 5, 10, 30]))
            offsets.append(rng.choice([0, 0, 3]))
            explains.append(rng.random() < 0.3)
    return inputs, weights, ks, offsets, explains


def _same(one, many) -> None:  # type: ignore[no-untyped-def]
    """The same items in the same order (or swapped only within float32 rounding), same sources and scores."""
    assert len(one) == len(many)
    for a, b in zip(one, many, strict=True):
        assert b.score == pytest.approx(a.score, abs=1e-5)
        if a.item_id != b.item_id:  # a near-tie may swap: the two scores must be that close
            assert {a.item_id, b.item_id} <= {r.item_id for r in one} & {r.item_id for r in many}
            continue
        assert (a.source, a.reason) == (b.source, b.reason)
        assert a.components.keys() == b.components.keys()
        for name, value in a.components.items():
            assert b.components[name] == pytest.approx(value, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_block_gives_each_request_its_own_list(seed: int) -> None:
    inputs, weights, ks, offsets, explains = _requests(seed)
    blocked = merge_many(inputs, weights, ks, offsets, explains)
    alone = [merge(i, w, k, o, e) for i, w, k, o, e in zip(inputs, weights, ks, offsets, explains, strict=True)]
    for one, many in zip(alone, blocked, strict=True):
        _same(one, many)
    assert any(len(x) for x in blocked) and any(r.source == "speed" for x in blocked for r in x)


def test_a_large_catalogue_is_cut_into_smaller_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: with room for 3 requests per block, 40 requests give the lists of one block."""
    inputs, weights, ks, offsets, explains = _requests(5)
    whole = merge_many(inputs, weights, ks, offsets, explains)
    monkeypatch.setattr(block, "MAX_BLOCK_CELLS", 3 * N_ITEMS)
    monkeypatch.setattr(block, "MIN_BLOCK_REQUESTS", 1)
    assert block.block_size(N_ITEMS) == 3
    cut = merge_many(inputs, weights, ks, offsets, explains)
    for a, b in zip(whole, cut, strict=True):
        _same(a, b)


def test_a_catalogue_too_large_for_the_cells_bound_still_shares_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(block, "MAX_BLOCK_CELLS", N_ITEMS // 2)
    assert block.block_size(N_ITEMS) == block.MIN_BLOCK_REQUESTS > 1


def test_a_seen_index_outside_the_catalogue_is_refused_not_carried_into_a_neighbours_row() -> None:
    for bad in (np.array([N_ITEMS]), np.array([-1])):
        with pytest.raises(IndexError, match="outside"):
            block.seen_table(N_ITEMS, [np.array([0, 1]), bad, np.array([2])])
    assert block.seen_table(N_ITEMS, [np.array([0]), np.array([], dtype=np.int32)]).sum() == 1


def test_requests_of_other_models_and_empty_asks_in_one_call() -> None:
    made = _requests(6, n=8)
    inputs, ks = made[0], made[2]
    other = snapshot_model(N_ITEMS, F, version="v2", seed=9)
    mixed = [*inputs, MergeInput(other, now_s=NOW), MergeInput(other, now_s=NOW)]
    out = merge_many(mixed, MergeWeights(), [*ks, 4, 0])
    assert [r.item_id for r in out[-2]] == [r.item_id for r in merge(MergeInput(other, now_s=NOW), MergeWeights(), 4)]
    assert out[-1] == []
    for i, (inp, k) in enumerate(zip(inputs, ks, strict=True)):
        _same(merge(inp, MergeWeights(), k), out[i])


def test_old_recent_items_still_weigh_by_their_similarity() -> None:
    """Recent items ~145 half-lives old have float32 recency weights below the normal range (~1e-44): the session
    component must still be their weighted mean cosine similarity (it came out as a few fixed fractions such as
    0.8333 for every item, and differed between a block and a single request)."""
    model = snapshot_model(N_ITEMS, F, version="v1", seed=4)
    half_life = 1800.0
    recent = [(f"i{i}", NOW - half_life * (145.0 + 0.3 * n)) for n, i in enumerate([3, 8, 15, 22, 40])]
    fresh = FreshUser(user_id="u", recent=recent)
    weights = MergeWeights(session=1.0, trending=0.0, session_half_life_s=half_life)
    inp = MergeInput(model, fresh=fresh, now_s=NOW)
    unit = model.unit_factors.astype(np.float64)
    seeds = np.array([model.item_index[i] for i, _ in recent])
    w = np.array([0.5 ** ((NOW - t) / half_life) for _, t in recent])
    for ranked in (merge(inp, weights, k=10, explain=True), merge_many([inp] * 3, weights, 10, explain=True)[1]):
        for r in ranked:
            want = float(unit[model.item_index[r.item_id]] @ unit[seeds].T @ w / w.sum())
            assert r.components["session"] == pytest.approx(want, abs=1e-4)


def _ruled_and_fed(seed: int) -> tuple[list[MergeInput], list[MergeWeights], list[int], list[int], list[bool]]:
    """:func:`_requests` where some requests carry the catalog's ``eligible`` mask (deepened neighbours) and some
    users have hidden, disliked and shown items (the feedback steps)."""
    rng = random.Random(100 + seed)
    inputs, weights, ks, offsets, explains = _requests(seed)
    masks = [np.array([rng.random() < 0.6 for _ in range(N_ITEMS)]) for _ in range(3)]
    out = []
    for inp in inputs:
        fresh = inp.fresh
        if fresh is not None and rng.random() < 0.6:
            items = [f"i{rng.randrange(N_ITEMS)}" for _ in range(8)]
            fresh = msgspec.structs.replace(
                fresh,
                hidden={items[0]: NOW - 50.0},
                disliked={items[1]: NOW - 40.0, items[2]: NOW - 30.0},
                shown={item: [NOW - 60.0 * j for j in range(rng.randrange(1, 8))] for item in items[3:]},
            )
        eligible = rng.choice([None, None, *masks])
        out.append(replace(inp, fresh=fresh, eligible=eligible))
    demote = DemoteSettings(dislike_neighbours=5, fatigue_after=3)
    return out, [replace(w, demote=demote) for w in weights], ks, offsets, explains


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_block_applies_each_requests_rules_and_feedback(seed: int) -> None:
    """The catalog's rules (an item outside ``eligible`` never comes back, neighbours deepen past them) and the
    feedback steps (hidden and disliked items never come back, their neighbours and fatigued items are demoted,
    explained) apply per request in a block, as in a request alone."""
    inputs, weights, ks, offsets, explains = _ruled_and_fed(seed)
    blocked = merge_many(inputs, weights, ks, offsets, explains)
    alone = [merge(i, w, k, o, e) for i, w, k, o, e in zip(inputs, weights, ks, offsets, explains, strict=True)]
    for inp, one, many in zip(inputs, alone, blocked, strict=True):
        _same(one, many)
        index = inp.model.item_index
        for r in many:
            assert inp.eligible is None or inp.eligible[index[r.item_id]]
            assert inp.fresh is None or (r.item_id not in inp.fresh.hidden and r.item_id not in inp.fresh.disliked)
    assert any("demoted" in (r.reason or "") for x in blocked for r in x)
    assert any(inp.eligible is not None and len(x) for inp, x in zip(inputs, blocked, strict=True))
