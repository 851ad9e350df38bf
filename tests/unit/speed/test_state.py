"""Speed-layer state functions: fold-in, idempotence, rebase on a new snapshot, trending decay."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lambdarec.events import Event
from lambdarec.model.foldin import confidence, fold_in
from lambdarec.model.freshstate import rebase
from lambdarec.model.rows import UserRow
from lambdarec.rank.trending import trending_scores
from lambdarec.settings import SpeedSettings
from speed_layer.state import apply_trending, apply_user_events
from tests.factories import snapshot_model

SPEED = SpeedSettings(recent_items=3)
WEIGHTS = {"view": 1.0, "purchase": 4.0}


def model_at(version: str, cutoff: float, log_positions: dict[str, int] | None = None):
    m = snapshot_model(version=version)
    m.manifest.update({"data_cutoff_s": cutoff, "event_weights": WEIGHTS, "model": {"alpha": 2.0}})
    if log_positions is not None:
        m.manifest["log_positions"] = log_positions
    object.__setattr__(m, "solver", {"alpha": 2.0, "regularization": 0.1})
    return m


def ev(n: int, item: str, ts: float, etype: str = "view", user: str = "u1") -> Event:
    return Event(event_id=f"e{n}", user_id=user, item_id=item, event_type=etype, timestamp=ts)


def test_unknown_user_gets_a_vector_from_first_event() -> None:
    model = model_at("v1", 1000.0)
    state = apply_user_events(None, [(ev(1, "i3", 2000.0, "purchase"), (0, 0))], model, None, settings=SPEED)
    expected = fold_in(model.item_factors, model.yty, [3], confidence([4.0], 2.0), 0.1)
    assert state.basis == "v1"
    np.testing.assert_allclose(state.vector, expected, rtol=1e-6)
    assert state.recent == [("i3", 2000.0)] and state.positions == {"0": 1}


def test_known_user_folds_batch_history_and_fresh_events_together() -> None:
    model = model_at("v1", 1000.0)
    history = UserRow(
        "u1",
        np.array([], np.int32),
        np.array([], np.float32),
        np.array([1, 2], np.int32),
        np.array([1.0, 2.0], np.float32),
    )
    state = apply_user_events(None, [(ev(1, "i2", 2000.0), (0, 5))], model, history, settings=SPEED)
    expected = fold_in(model.item_factors, model.yty, [1, 2], confidence([1.0, 3.0], 2.0), 0.1)
    np.testing.assert_allclose(state.vector, expected, rtol=1e-6)


def test_redelivered_events_are_not_counted_twice() -> None:
    model = model_at("v1", 1000.0)
    batch = [(ev(i, f"i{i}", 2000.0 + i), (1, 10 + i)) for i in range(4)]
    once = apply_user_events(None, batch, model, None, settings=SPEED)
    assert apply_user_events(once, batch, model, None, settings=SPEED) is None
    # a partly redelivered batch applies only the new tail
    more = [*batch[2:], (ev(9, "i9", 2100.0), (1, 14))]
    twice = apply_user_events(once, more, model, None, settings=SPEED)
    assert [e[0] for e in twice.events] == ["i0", "i1", "i2", "i3", "i9"]
    assert twice.positions == {"1": 15}


def test_recent_items_are_bounded_newest_kept() -> None:
    model = model_at("v1", 0.0)
    batch = [(ev(i, f"i{i}", 100.0 + i), (0, i)) for i in range(6)]
    state = apply_user_events(None, batch, model, None, settings=SPEED)
    assert [r[0] for r in state.recent] == ["i3", "i4", "i5"]


def test_rebase_drops_events_the_new_batch_contains_and_resolves() -> None:
    old, new = model_at("v1", 1000.0), model_at("v2", 2500.0, {"0": 1})
    batch = [(ev(1, "i1", 2000.0), (0, 0)), (ev(2, "i5", 3000.0), (0, 1))]
    state = apply_user_events(None, batch, old, None, settings=SPEED)
    moved = rebase(state, new, history=None)
    assert moved.basis == "v2"
    assert [e[0] for e in moved.events] == ["i5"]
    expected = fold_in(new.item_factors, new.yty, [5], confidence([1.0], 2.0), 0.1)
    np.testing.assert_allclose(moved.vector, expected, rtol=1e-6)
    assert rebase(moved, new, None) is moved


def test_a_late_event_the_batch_did_not_read_survives_the_flip_whatever_its_event_time() -> None:
    # the new snapshot's input covered partition 0 up to offset 2 and partition 1 not at all
    old, new = model_at("v1", 1000.0), model_at("v2", 5000.0, {"0": 2})
    batch = [
        (ev(1, "i1", 2000.0), (0, 0)),  # read by the batch: dropped
        (ev(2, "i2", 1500.0), (0, 2)),  # late: event time before the cut-off, appended after the batch read
        (ev(3, "i3", 1200.0, user="u1"), (1, 0)),  # another partition the batch never read
    ]
    state = apply_user_events(None, batch, old, None, settings=SPEED)
    moved = rebase(state, new, history=None)
    assert [e[0] for e in moved.events] == ["i2", "i3"]
    assert moved.event_positions == [(0, 2), (1, 0)]
    # and a further event under the new snapshot keeps them, dropping nothing the batch lacks
    later = apply_user_events(moved, [(ev(4, "i4", 900.0), (0, 3))], new, None, settings=SPEED)
    assert [e[0] for e in later.events] == ["i2", "i3", "i4"]


def test_a_snapshot_built_from_files_covers_no_log_event() -> None:
    old, files_only = model_at("v1", 1000.0), model_at("v2", 9000.0)  # no log_positions: read no log
    state = apply_user_events(None, [(ev(1, "i1", 2000.0), (0, 0))], old, None, settings=SPEED)
    assert [e[0] for e in rebase(state, files_only, None).events] == ["i1"]


def test_events_without_a_snapshot_are_kept_without_vector() -> None:
    state = apply_user_events(None, [(ev(1, "x", 10.0), (0, 0))], None, None, settings=SPEED, default_weights=WEIGHTS)
    assert state.vector is None and state.events == [("x", 10.0, 1.0)]


def test_trending_is_order_independent_and_exactly_once() -> None:
    events = [(ev(i, "i4", 1000.0 + 600 * i, "purchase" if i % 2 else "view"), (i % 2, i)) for i in range(6)]
    results = []
    for perm in itertools.permutations(events, 6):
        # within a partition, offsets must stay in order: keep only such permutations
        by_part = {}
        if any(by_part.setdefault(p[0], -1) > p[1] or by_part.__setitem__(p[0], p[1]) for _, p in perm):
            continue
        item = apply_trending(None, list(perm), WEIGHTS, half_life_s=3600.0)
        results.append(item.count * 2 ** (-(5000 - item.as_of) / 3600))
        assert apply_trending(item, list(perm), WEIGHTS, 3600.0) is None
    assert len(results) > 1
    assert max(results) == pytest.approx(min(results), rel=1e-9)
    expected = sum((4.0 if i % 2 else 1.0) * 2 ** (-(5000 - (1000 + 600 * i)) / 3600) for i in range(6))
    assert results[0] == pytest.approx(expected, rel=1e-9)


def test_trending_scores_decay_to_now() -> None:
    model = model_at("v1", 0.0)
    item = apply_trending(None, [(ev(1, "i2", 1000.0), (0, 0))], WEIGHTS, 100.0)
    other = apply_trending(None, [(ev(2, "new-item", 1000.0), (1, 0))], WEIGHTS, 100.0)
    shard = apply_trending(None, [(ev(3, "i2", 1100.0), (1, 1))], WEIGHTS, 100.0)
    rows = {t.key: t for t in (item, other, shard)}
    scores = trending_scores(rows, model, now_s=1200.0, half_life_s=100.0)
    # i2's two partition shards add up; the item the snapshot lacks is left out
    assert scores[2] == pytest.approx(0.25 + 0.5) and scores.sum() == pytest.approx(0.75)
