"""Requests of a block that share a fresh vector and a seen set share one speed-pool selection; each still gets
exactly the items a selection of its own gives."""

from __future__ import annotations

import random

import numpy as np

from lambdarec.rank.block import top_unseen, top_unseen_shared
from lambdarec.rank.seeds import evidence, evidence_many
from lambdarec.store import FreshUser
from tests.unit.replay.conftest import make_model


def test_shared_selection_gives_each_request_its_own_items() -> None:
    rng = np.random.default_rng(4)
    n_items, n = 50, 7
    scores = rng.normal(size=(3, n_items)).astype(np.float32)
    slot = np.array([0, 0, 1, 1, 1, -1, 2, 0, 0])  # pairs and a triple sharing a vector; one request without
    seen = rng.random((slot.size, n_items)) < 0.3
    seen[1] = seen[0]  # the variants of one event: same vector, same seen set
    seen[3] = seen[4] = seen[2]
    seen[6, : n_items - 3] = True  # fewer unseen items than n: all of them
    seen[8] = seen[7]
    seen[8, 5] = not seen[8, 5]  # same vector, another seen set: a selection of its own
    rows = np.flatnonzero(slot >= 0)
    got_rows, got_items = top_unseen_shared(scores, slot, seen, rows, n)
    for b in rows.tolist():
        _, items = top_unseen(scores[slot[b]][None], seen[b][None], n)
        assert sorted(got_items[got_rows == b].tolist()) == sorted(items.tolist()), b
    assert np.all(np.diff(got_rows) >= 0)  # ordered by request, as the block's tables expect


def test_evidence_of_a_block_is_each_requests_own() -> None:
    """A block's fresh evidence (one pass over every request's event times) is, exactly, each request's alone."""
    model = make_model(cutoff_s=1000.0)
    rng = random.Random(0)
    fresh, sessions, now, half_life = [], [], [], []
    for _ in range(200):
        events = [(f"i{rng.randrange(30)}", rng.uniform(0, 9000), 1.0) for _ in range(rng.randrange(0, 120))]
        fresh.append(FreshUser(user_id="u", events=events) if rng.random() < 0.8 else None)
        sessions.append([(f"i{rng.randrange(30)}", rng.uniform(5000, 9000)) for _ in range(rng.randrange(0, 5))])
        now.append(rng.choice([0.0, 9000.0, 9500.0]))  # 0: no request time, no evidence
        half_life.append(rng.choice([600.0, 1800.0]))
    got = evidence_many(model, fresh, sessions, now, half_life).tolist()
    assert got == [evidence(model, *args) for args in zip(fresh, sessions, now, half_life, strict=True)]
    assert 0.0 in got and max(got) > 0.5
