"""Drift: fresh evidence raises the session weight, by how much and how recently the user acted."""

from __future__ import annotations

import numpy as np

from lambdarec.rank.merge import MergeInput, MergeWeights, fresh_evidence, merge
from lambdarec.store import FreshUser, UserRow
from tests.unit.replay.conftest import make_model


def _row() -> UserRow:
    cands = np.arange(10, 20, dtype=np.int32)  # the nightly list: items i10..i19, strongest first
    return UserRow("u", cands, np.linspace(1.0, 0.9, 10).astype(np.float32), np.array([0, 1], np.int32),
                   np.ones(2, np.float32))  # fmt: skip


def test_evidence_grows_with_the_amount_and_recency_of_fresh_events() -> None:
    model = make_model(cutoff_s=1000.0)
    now = 100_000.0

    def evidence(times: list[float]) -> float:
        fresh = FreshUser(user_id="u", events=[(f"i{20 + n}", t, 1.0) for n, t in enumerate(times)])
        return fresh_evidence(MergeInput(model, fresh=fresh, now_s=now), half_life_s=1800.0)

    assert evidence([]) == 0.0
    assert evidence([500.0]) == 0.0  # before the cut-off: the batch has it already
    one, three = evidence([now - 60]), evidence([now - 60, now - 50, now - 40])
    old = evidence([now - 3 * 3600, now - 3 * 3600, now - 3 * 3600])
    assert 0 < old < one < three < 1


def test_with_fresh_boost_recent_events_outweigh_the_nightly_list() -> None:
    """A user who just touched items far from their nightly list gets the items near those first."""
    model = make_model(cutoff_s=1000.0)
    now = 10_000.0
    recent = [("i25", now - 30.0), ("i26", now - 20.0), ("i27", now - 10.0)]
    fresh = FreshUser(user_id="u", events=[(i, t, 1.0) for i, t in recent], recent=recent)
    inp = MergeInput(model, batch_row=_row(), fresh=fresh, now_s=now)
    near = {int(j) for s in (25, 26, 27) for j in model.neighbours[s] if j >= 0} - {25, 26, 27}
    plain = [int(r.item_id[1:]) for r in merge(inp, MergeWeights(session=0.5, fresh_boost=0.0), k=5)]
    boosted = [int(r.item_id[1:]) for r in merge(inp, MergeWeights(session=0.5, fresh_boost=20.0), k=5)]
    assert sum(i in near for i in boosted) > sum(i in near for i in plain)
