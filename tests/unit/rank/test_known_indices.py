"""A caller that already holds the indices of a request's ``exclude`` items (the replay keeps them as events
arrive) hands them to the block merge (``known_indices``), which then gives the very lists it gives when it looks
every name up; the indices are taken only for the same set object and model, and only within the block."""

from __future__ import annotations

import numpy as np

from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.rank.memo import known_indices
from lambdarec.rank.merge import MergeInput, MergeWeights, merge_many
from tests.factories import snapshot_model

N_ITEMS, F = 40, 6


def _inputs(model, excludes):  # type: ignore[no-untyped-def]
    row = UserRow("u", np.arange(30, dtype=np.int32), np.linspace(3, 1, 30).astype(np.float32),
                  np.array([0, 1], np.int32), np.ones(2, np.float32))  # fmt: skip
    return [MergeInput(model, batch_row=row, exclude=x, now_s=1.0) for x in excludes]


def _ids(ranked) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[r.item_id for r in items] for items in ranked]


def test_handed_indices_give_the_lists_of_the_name_lookups() -> None:
    model = snapshot_model(N_ITEMS, F, version="v1", seed=3)
    rng = np.random.default_rng(0)
    excludes = [frozenset(f"i{i}" for i in rng.choice(N_ITEMS + 5, size=12)) for _ in range(8)]
    inputs = _inputs(model, excludes)
    looked_up = _ids(merge_many(inputs, MergeWeights(), k=10))
    pairs = [(x, rng.permutation([model.item_index[i] for i in x if i in model.item_index])) for x in excludes]
    with known_indices(model, pairs):
        handed = _ids(merge_many(inputs, MergeWeights(), k=10))
    assert handed == looked_up
    assert all(not set(items) & x for items, x in zip(handed, excludes, strict=True))


def test_handed_indices_are_taken_for_their_set_and_model_only_within_the_block() -> None:
    model, other = snapshot_model(N_ITEMS, F, version="v1", seed=3), snapshot_model(N_ITEMS, F, version="v2", seed=3)
    exclude = frozenset({"i2"})
    plain = _ids(merge_many(_inputs(model, [frozenset({"i2"})]), MergeWeights(), k=5))[0]
    # indices that name other items than the set: the block must remove those (it took them), not i2
    with known_indices(model, [(exclude, np.array([model.item_index[plain[0]]]))]):
        taken = _ids(merge_many(_inputs(model, [exclude]), MergeWeights(), k=5))[0]
        equal_set = _ids(merge_many(_inputs(model, [frozenset({"i2"})]), MergeWeights(), k=5))[0]
        other_model = _ids(merge_many(_inputs(other, [exclude]), MergeWeights(), k=5))[0]
    assert plain[0] not in taken and "i2" in taken
    assert equal_set == plain  # another (equal) set object: its names are looked up
    assert "i2" not in other_model  # another model: its names are looked up
    assert _ids(merge_many(_inputs(model, [exclude]), MergeWeights(), k=5))[0] == plain  # after the block


def test_the_first_merge_after_the_block_looks_the_names_up_again() -> None:
    """Handed indices are not remembered past their block, even for the very next merge of the same set."""
    model = snapshot_model(N_ITEMS, F, version="v1", seed=3)
    exclude = frozenset({"i2"})
    plain = _ids(merge_many(_inputs(model, [frozenset({"i2"})]), MergeWeights(), k=5))[0]
    with known_indices(model, [(exclude, np.array([model.item_index[plain[0]]]))]):
        assert "i2" in _ids(merge_many(_inputs(model, [exclude]), MergeWeights(), k=5))[0]
    assert _ids(merge_many(_inputs(model, [exclude]), MergeWeights(), k=5))[0] == plain


def test_a_fresh_state_handed_with_its_exclude_indices_gives_the_lists_of_the_name_lookups() -> None:
    """A replay whose ``exclude`` holds every item of a fresh state hands the state with the ``exclude`` indices:
    the block unions both into the seen set, so the lists are those of looking the state's names up."""
    model = snapshot_model(N_ITEMS, F, version="v1", seed=3)
    rng = np.random.default_rng(1)
    inputs, pairs = [], []
    for u in range(6):
        items = [f"i{i}" for i in rng.choice(N_ITEMS + 5, size=10, replace=False)]
        fresh = FreshUser(user_id=f"u{u}", events=[(i, 5.0 + n, 1.0) for n, i in enumerate(items[:6])],
                          recent=[(i, 5.0 + n) for n, i in enumerate(items[4:])])  # fmt: skip
        exclude = frozenset(items) | {f"i{rng.integers(N_ITEMS)}"}
        inputs.append(MergeInput(model, fresh=fresh, exclude=exclude, now_s=20.0))
        held = np.array([model.item_index[i] for i in exclude if i in model.item_index])
        pairs += [(exclude, held), (fresh, held)]
    looked_up = _ids(merge_many(inputs, MergeWeights(), k=10))
    with known_indices(model, pairs):
        handed = _ids(merge_many(inputs, MergeWeights(), k=10))
    assert handed == looked_up
    assert all(not set(items) & inp.exclude for items, inp in zip(handed, inputs, strict=True))
