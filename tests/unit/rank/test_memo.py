"""What the merge keeps from one call to the next (lambdarec.rank.memo) never changes a list: a request that shares
objects with the previous one gets what a request with fresh copies of them gets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lambdarec.model.freshstate import solve
from lambdarec.rank.memo import finite_vector, item_indices
from lambdarec.rank.merge import MergeInput, MergeWeights, merge
from lambdarec.store import FreshUser, UserRow
from tests.unit.replay.conftest import make_model

NOW = 10_000.0


def _inputs(model) -> list[MergeInput]:  # type: ignore[no-untyped-def]
    """The variants of one event as the replay asks them: the same row, fresh state and ``exclude`` objects; the
    session (which widens the seen set) only for some."""
    row = UserRow("u", np.arange(10, 25, dtype=np.int32), np.linspace(1.0, 0.5, 15).astype(np.float32),
                  np.array([0, 1, 12], np.int32), np.ones(3, np.float32))  # fmt: skip
    recent = [("i25", NOW - 30.0), ("i27", NOW - 20.0)]
    fresh = solve(FreshUser(user_id="u", events=[(i, t, 1.0) for i, t in recent], recent=recent), model, row)
    exclude = frozenset({"i16", "i25", "i27", "i3"})
    base = MergeInput(model, batch_row=row, fresh=fresh, exclude=exclude, now_s=NOW)
    return [
        replace(base, fresh=None),
        base,
        replace(base, session=[("i4", NOW), ("i5", NOW)]),  # seen grows by the session: the speed pool must follow
        replace(base, session=[("i4", NOW)]),
        base,
    ]


def _copied(inp: MergeInput) -> MergeInput:
    """The same request made of new objects: nothing kept from an earlier call can match it."""
    fresh = None if inp.fresh is None else FreshUser(**{f: getattr(inp.fresh, f) for f in inp.fresh.__struct_fields__})
    return replace(inp, fresh=fresh, exclude=frozenset(set(inp.exclude)))


def test_shared_objects_give_the_lists_of_new_ones() -> None:
    model = make_model(cutoff_s=1000.0)
    weights = MergeWeights(session=0.7, trending=0.0, speed_top_n=10)  # a small speed pool: the seen set matters
    shared = [merge(inp, weights, k=30) for inp in _inputs(model)]
    fresh = [merge(_copied(inp), weights, k=30) for inp in _inputs(model)]
    assert [[(r.item_id, r.source) for r in ranked] for ranked in shared] == [
        [(r.item_id, r.source) for r in ranked] for ranked in fresh
    ]
    for ranked in shared:
        assert not {"i0", "i1", "i12", "i16", "i25", "i27", "i3"} & {r.item_id for r in ranked}
    assert not {"i4", "i5"} & {r.item_id for r in shared[2]}
    assert any(r.source == "speed" for r in shared[1])


def test_item_indices_follow_the_model() -> None:
    model, other = make_model(), make_model(version="v2")
    other.item_index  # noqa: B018  (the same ids: only the model object differs)
    exclude = frozenset({"i3", "i7", "not-in-the-snapshot"})
    assert sorted(item_indices(model, exclude, lambda: exclude).tolist()) == [3, 7]
    calls: list[int] = []
    assert sorted(item_indices(model, exclude, lambda: calls.append(1) or exclude).tolist()) == [3, 7]
    assert calls == []  # the same model and set: looked up once
    assert sorted(item_indices(other, exclude, lambda: calls.append(1) or exclude).tolist()) == [3, 7]
    assert calls == [1]


def _explained(ranked) -> list[tuple[str, str, float, float]]:  # type: ignore[no-untyped-def]
    return [(r.item_id, r.source, round(r.score, 5), round(r.components["session"], 5)) for r in ranked]


def test_variants_sharing_a_fresh_state_at_other_times_and_models_get_their_own_lists() -> None:
    """What the variants of one event share (the recent items' seed weights, the fresh vector's item scores) is
    kept per state *and* time and model: the same state asked later, or against another loaded model (here of
    the same version name, so the vector is used with both), is weighed and scored again, as new objects are."""
    model, other = make_model(cutoff_s=1000.0), make_model(cutoff_s=1000.0, seed=3)
    weights = MergeWeights(session=0.7, trending=0.0, speed_top_n=10)
    base = _inputs(model)[1]  # the fresh state solved against ``model``, with two recent items
    again = replace(base, fresh=solve(base.fresh, other, base.batch_row), model=other)
    asks = [
        base,
        replace(base, session=[("i4", NOW)]),  # the session part added to the kept recent part
        replace(base, now_s=NOW + 3600.0),  # an hour later: the recent items weigh less
        replace(base, now_s=NOW + 3600.0, session=[("i25", NOW + 3600.0)]),  # a recent item again, now weighing 1
        replace(base, model=other),  # the same state against another model: other item scores
        again,
    ]
    shared = [_explained(merge(inp, weights, k=12, explain=True)) for inp in asks]
    fresh = [_explained(merge(_copied(inp), weights, k=12, explain=True)) for inp in asks]
    assert shared == fresh
    assert shared[0] != shared[2]  # the time matters: the sharing must not hide it
    assert shared[0] != shared[4]


def test_interleaved_users_states_keep_what_was_derived_from_each() -> None:
    """Serving interleaves many users' requests and reads an unchanged state as the same object again: each state's
    vector and item indices are derived once, a new model derives them again, and the lists stay those of new
    objects."""
    model, other = make_model(cutoff_s=1000.0), make_model(cutoff_s=1000.0, version="v2")
    base = _inputs(model)[1]

    def state(j: int) -> FreshUser:
        item = f"i{20 + j}"
        return solve(FreshUser(user_id=f"u{j}", recent=[(item, NOW - 5.0)], events=[(item, NOW - 5.0, 1.0)]), model,
                     base.batch_row)  # fmt: skip

    states = [state(j) for j in range(3)]
    looked_up: list[str] = []

    def items_of(state: FreshUser):  # type: ignore[no-untyped-def]
        return lambda: looked_up.append(state.user_id) or [item for item, _ in state.recent]

    for _ in range(2):  # the second round finds every state's indices and vector
        for state in states:
            assert item_indices(model, state, items_of(state)).tolist() == [model.item_index[state.recent[0][0]]]
            assert finite_vector(state) is finite_vector(state)
    assert looked_up == ["u0", "u1", "u2"]
    item_indices(other, states[0], items_of(states[0]))  # another snapshot: looked up again
    assert looked_up[-1] == "u0" and len(looked_up) == 4
    weights = MergeWeights(session=0.7, trending=0.0, speed_top_n=10)
    interleaved = [merge(replace(base, fresh=state), weights, k=20) for state in states * 2]
    copies = [merge(_copied(replace(base, fresh=state)), weights, k=20) for state in states * 2]
    assert [[r.item_id for r in ranked] for ranked in interleaved] == [[r.item_id for r in ranked] for ranked in copies]


def test_what_was_derived_from_a_state_goes_with_the_state() -> None:
    """Nothing kept from a state keeps it alive: its entries go when the last reference to it does."""
    import gc

    from lambdarec.rank import memo

    model = make_model(cutoff_s=1000.0)
    row = _inputs(model)[1].batch_row
    state = solve(FreshUser(user_id="gone", recent=[("i3", NOW)], events=[("i3", NOW, 1.0)]), model, row)
    assert finite_vector(state) is not None
    item_indices(model, state, lambda: ["i3"])
    key = id(state)
    assert key in memo._vectors._data and key in memo._fresh_indices._data
    del state
    gc.collect()
    assert key not in memo._vectors._data and key not in memo._fresh_indices._data
