"""The merge's shortcuts (skipped zero-weight components, the sort-free pool dedupe) change no list."""

from __future__ import annotations

import numpy as np

from lambdarec.rank.merge import MergeInput, MergeWeights, merge
from lambdarec.store import FreshUser, UserRow
from tests.unit.replay.conftest import make_model


def _input(model, now: float) -> MergeInput:  # type: ignore[no-untyped-def]
    row = UserRow("u", np.arange(10, 25, dtype=np.int32), np.linspace(1.0, 0.5, 15).astype(np.float32),
                  np.array([0, 1, 12], np.int32), np.ones(3, np.float32))  # fmt: skip
    recent = [("i25", now - 30.0), ("i27", now - 20.0)]
    fresh = FreshUser(user_id="u", events=[(i, t, 1.0) for i, t in recent], recent=recent)
    trending = np.zeros(len(model.item_ids), np.float32)
    trending[[5, 15, 25, 28]] = [4.0, 3.0, 2.0, 1.0]
    return MergeInput(model, batch_row=row, fresh=fresh, session=[("i14", now)], exclude=frozenset({"i16"}),
                      trending=trending, now_s=now)  # fmt: skip


def test_zero_weight_components_leave_the_list_and_scores_as_explain_computes_them() -> None:
    """Without ``explain`` a component whose weight is 0 is not computed; the list must be the explained one."""
    model = make_model(cutoff_s=1000.0)
    inp = _input(model, 10_000.0)
    for weights in (MergeWeights(session=0.0, trending=0.0), MergeWeights(session=0.0), MergeWeights(trending=0.0)):
        fast = merge(inp, weights, k=10)
        full = merge(inp, weights, k=10, explain=True)
        assert [r.item_id for r in fast] == [r.item_id for r in full]
        assert [r.source for r in fast] == [r.source for r in full]
        assert np.allclose([r.score for r in fast], [r.score for r in full], rtol=1e-6)


def test_pool_keeps_each_item_once_with_the_source_that_brought_it_first() -> None:
    """A batch candidate that is also a neighbour of the session keeps its batch source; seen items never show."""
    model = make_model(cutoff_s=1000.0)
    inp = _input(model, 10_000.0)
    ranked = merge(inp, MergeWeights(), k=len(model.item_ids))
    ids = [r.item_id for r in ranked]
    assert len(ids) == len(set(ids))
    assert not {"i0", "i1", "i12", "i14", "i16", "i25", "i27"} & set(ids)
    batch = {f"i{i}" for i in range(10, 25)}
    assert all(r.source == "batch" for r in ranked if r.item_id in batch)
