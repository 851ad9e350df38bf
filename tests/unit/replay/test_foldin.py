"""The replay's fold-in updated as events arrive (replay.foldin) gives each state the vector the speed layer's
full solve gives it (lambdarec.model.freshstate.solve_many), however the state grew: new items, repeated items,
items of the batch history, items the snapshot lacks, events dropped by the bound, an erased history, a flip."""

from __future__ import annotations

import random

import numpy as np
import pytest
from msgspec import structs

from lambdarec.model.freshstate import solve_many, uncovered
from lambdarec.store import FreshUser
from replay.foldin import IncrementalFoldIn
from tests.unit.replay.conftest import N_ITEMS, F, make_model, user_row


def close(got: FreshUser, want: FreshUser) -> None:
    assert got.basis == want.basis
    if want.vector is None:
        assert got.vector is None
        return
    a, b = np.array(got.vector), np.array(want.vector)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max()), np.abs(a - b).max()


AFTER_CUTOFF = 2000.0  # the test model's snapshot covers events up to 1000: later ones are all fresh


def fresh(user_id: str) -> FreshUser:
    return FreshUser(user_id=user_id, updated_at=AFTER_CUTOFF)


def grow(rng: random.Random, state: FreshUser, n: int, keep: int = 1000) -> FreshUser:
    """``state`` with ``n`` new events (known items, repeats, one the snapshot lacks now and then), bounded."""
    t = max(state.updated_at, AFTER_CUTOFF)
    events = list(state.events)
    for _ in range(n):
        t += rng.uniform(0, 100)
        item = "unknown" if rng.random() < 0.05 else f"i{rng.randrange(N_ITEMS)}"
        events.append((item, t, rng.choice([1.0, 2.0, 0.5])))
    return structs.replace(state, events=events[-keep:], updated_at=t)


@pytest.mark.parametrize("refresh", [4, 10_000])  # rebuilt often; never rebuilt over hundreds of updates
def test_each_state_gets_the_full_solves_vector_as_it_grows(refresh: int) -> None:
    model = make_model()
    rng = random.Random(refresh)
    rows = {"warm": user_row("warm", [0, 1, 2], [1, 2, 3, 5, 8]), "cold": None}
    solver = IncrementalFoldIn(refresh=refresh)
    states = {u: fresh(u) for u in rows}
    for step in range(300):
        batch = []
        for u in rng.sample(sorted(rows), k=2):
            states[u] = grow(rng, states[u], rng.choice([1, 1, 1, 2, 3]))
            batch.append(states[u])
        if step % 7 == 0:  # the same user twice in one call: an earlier and a later state
            u = batch[0].user_id
            states[u] = grow(rng, states[u], 1)
            batch.append(states[u])
        histories = [rows[s.user_id] for s in batch]
        got = solver.solve_many(batch, model, histories)
        for one, want in zip(got, solve_many(batch, model, histories), strict=True):
            close(one, want)


def test_dropped_events_an_erased_history_and_a_flip_rebuild_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    model, flipped = make_model(), make_model(version="v2", seed=3)
    row = user_row("u", [0], [4, 6, 7])
    rng = random.Random(5)
    solver = IncrementalFoldIn()
    builds = []
    build = solver._build
    monkeypatch.setattr(solver, "_build", lambda *a: builds.append(1) or build(*a))
    state = grow(rng, fresh("u"), 5)
    longer = grow(rng, state, 2)
    cases = [
        (state, model, 1),  # the first sight of the user
        (longer, model, 0),  # two new events: extended
        (grow(rng, longer, 4, keep=8), model, 1),  # the oldest events dropped by the bound (longer, yet not an
        # extension of the 7 held: a new first event)
        (state, model, 1),  # an earlier, shorter state after a later one
        (structs.replace(grow(rng, state, 2), erased_at=1e12), model, 1),  # erased: the history no longer counts
        (grow(rng, state, 3), flipped, 1),  # another snapshot: other factors, another base
    ]
    for s, m, rebuilt in cases:
        assert len(uncovered(s, m)[0]) == len(s.events) > 0, "every event is fresh: the guard sees them all"
        before = len(builds)
        close(solver.solve_many([s], m, [row])[0], solve_many([s], m, [row])[0])
        assert len(builds) - before == rebuilt


def test_a_state_naming_no_known_item_has_no_vector_and_memory_is_bounded() -> None:
    model = make_model()
    empty = FreshUser(user_id="x", events=[("unknown", 2000.0, 1.0)])
    assert IncrementalFoldIn().solve_many([empty], model, [None])[0].vector is None
    users = [FreshUser(user_id=f"u{n}", events=[(f"i{n}", 2000.0 + t, 1.0) for t in range(50)]) for n in range(6)]
    one_user = IncrementalFoldIn()
    one_user.solve_many(users[:1], model, [None])
    cost = one_user._bytes
    assert cost > F * F * 8 + 8 * 50, "the events and items held count, not just the inverse"
    solver = IncrementalFoldIn(max_bytes=3 * cost)
    got = solver.solve_many(users, model, [None] * 6)
    for one, want in zip(got, solve_many(users, model, [None] * 6), strict=True):
        close(one, want)
    assert len(solver) == 3  # the least recently solved users were let go


def test_an_ill_conditioned_system_is_solved_in_full_each_time_not_kept() -> None:
    model = make_model()
    model.solver["regularization"] = 0.0
    f = model.item_factors.shape[1]
    model.item_factors[:, f - 1] = model.item_factors[:, 0] * (1 + 1e-7)  # two factors (nearly) the same
    model.yty[...] = model.item_factors.T.astype(np.float64) @ model.item_factors
    state = grow(random.Random(2), fresh("u"), 6)
    solver = IncrementalFoldIn()
    close(solver.solve_many([state], model, [None])[0], solve_many([state], model, [None])[0])
    assert len(solver) == 0
