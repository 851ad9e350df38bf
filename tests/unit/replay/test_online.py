"""The replay's in-memory online state: same results as the speed layer's functions, sessions, snapshot flips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.events import Event
from lambdarec.rank.trending import trending_scores
from lambdarec.settings import SpeedSettings
from replay.online import OnlineState
from speed_layer.state import append_user_events, apply_user_events
from tests.unit.replay.conftest import RowStore, make_model, user_row

WEIGHTS = {"view": 1.0, "click": 2.0}


def ev(n: int, user: str, item: str, t: float, session: str | None = None, kind: str = "view") -> Event:
    return Event(
        event_id=f"e{n}", user_id=user, item_id=item, event_type=kind, timestamp=t, weight=1.0, session_id=session
    )


EVENTS = [
    ev(0, "u1", "i3", 2000.0),
    ev(1, "u2", "i4", 2010.0, kind="click"),
    ev(2, "u1", "i4", 2020.0),
    ev(3, "u1", "i5", 2100.0),
    ev(4, "u2", "i3", 9000.0),
]


def test_fresh_state_is_what_the_speed_layer_computes(model, store) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    for event in EVENTS:
        online.apply([event])
    expected = None
    for n, event in enumerate(e for e in EVENTS if e.user_id == "u1"):
        expected = apply_user_events(expected, [(event, (0, n))], model, store.rows["u1"], settings=SpeedSettings())
    got = online.state("u1")
    assert got.basis == model.version and expected is not None
    assert got.events == expected.events and got.recent == expected.recent
    assert np.allclose(got.vector, expected.vector)
    assert online.state("u2").vector is not None  # a user the batch never saw is folded in from fresh events


def test_reading_state_between_events_does_not_change_it(model, store) -> None:
    eager = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    lazy = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    for event in EVENTS:
        eager.apply([event])
        eager.state(event.user_id)
        lazy.apply([event])
    for user in ("u1", "u2"):
        a, b = eager.state(user), lazy.state(user)
        assert a.events == b.events and a.recent == b.recent and a.positions == b.positions
        assert np.allclose(a.vector, b.vector)


def test_trending_vector_equals_trending_scores(model, store) -> None:
    speed = SpeedSettings(trending_half_life_s=600.0)
    online = OnlineState(store, model, speed, WEIGHTS)
    online.apply(EVENTS)
    now = 9500.0
    expected = trending_scores(online.trending_rows, model, now, speed.trending_half_life_s)
    assert np.allclose(online.trending(now), expected)
    assert online.trending(now)[4] > 0 and online.trending(now)[0] == 0


def test_sessions_end_after_a_gap_or_a_new_session_id(model, store) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS, session_gap_s=1800)
    online.apply([ev(0, "u1", "i1", 0.0), ev(1, "u1", "i2", 100.0)])
    assert online.session("u1", 200.0) == [("i1", 0.0), ("i2", 100.0)]
    assert online.session("u1", 100.0 + 1801) == []
    online.apply([ev(2, "u1", "i3", 2000.0)])
    assert online.session("u1", 2001.0) == [("i3", 2000.0)]
    online.apply([ev(3, "u3", "i1", 0.0, session="a"), ev(4, "u3", "i2", 5000.0, session="a")])
    assert online.session("u3", 5001.0, "a") == [("i1", 0.0), ("i2", 5000.0)]  # the log's id wins over the gap
    assert online.session("u3", 5001.0, "b") == []


def test_a_new_snapshot_rebases_every_state(model, store) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    online.apply(EVENTS)
    newer = make_model(version="v2", cutoff_s=2050.0, seed=1)
    newer.manifest["log_positions"] = {"0": 3}  # the new batch read the log up to offset 3
    online.switch(newer)
    state = online.state("u1")
    assert state.basis == "v2"
    assert [e[0] for e in state.events] == ["i5"]  # events below the new snapshot's log position are in the batch
    assert online.model is newer


@pytest.mark.parametrize("user", ["u1", "nobody"])
def test_history_is_read_once_per_snapshot(model, store, user) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    online.history(user)
    reads = store.reads
    online.history(user)
    assert store.reads == reads


def test_touched_collects_every_item_a_user_acted_on(model, store) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    online.apply(EVENTS)
    assert online.touched("u1") == frozenset({"i3", "i4", "i5"})
    assert online.touched("u2") == frozenset({"i4", "i3"})
    assert online.touched("nobody") == frozenset()


def test_touched_indices_name_the_touched_items_the_snapshot_has(model, store) -> None:
    online = OnlineState(store, model, SpeedSettings(), WEIGHTS)
    online.apply([*EVENTS, ev(5, "u1", "i3", 9100.0), ev(6, "u1", "not-in-the-snapshot", 9200.0)])

    def expected(user: str) -> list[int]:
        return sorted(online.model.item_index[i] for i in online.touched(user) if i in online.model.item_index)

    assert (
        sorted(online.touched_indices("u1").tolist())
        == expected("u1")
        == sorted(model.item_index[i] for i in ("i3", "i4", "i5"))
    )  # i3 once, the unknown item left out
    assert online.touched_indices("nobody").tolist() == []
    online.switch(make_model(version="v2", cutoff_s=2050.0, seed=1))
    assert sorted(online.touched_indices("u1").tolist()) == expected("u1")


def test_trending_at_the_time_of_the_previous_call_is_the_full_decay() -> None:
    online = OnlineState(RowStore({}), make_model(), SpeedSettings(trending_half_life_s=3600.0), WEIGHTS)
    rng = np.random.default_rng(4)
    t = 5000.0
    for n in range(300):
        t += float(rng.choice([0.0, 0.0, 7.0, 600.0]))  # most events share the previous one's time
        online.apply([ev(n, f"u{n % 7}", f"i{rng.integers(30)}", t, kind=str(rng.choice(["view", "click"])))])
        got = online.trending(t)
        count, as_of = np.zeros(len(got)), np.zeros(len(got))
        for row in online.trending_rows.values():
            i = online.model.item_index[row.item_id]
            count[i], as_of[i] = row.count, row.as_of
        full = (count * np.exp2(-np.maximum(t - as_of, 0.0) / 3600.0)).astype(np.float32)  # every item decayed
        # the same decay, computed over a subset of the items there and every item here: equal within float32's
        # rounding (a vectorised exp2 may round its last bit differently by array length on another CPU)
        np.testing.assert_allclose(got, full, rtol=1e-6, atol=0)
        assert got is not online.trending(t)  # each call's array is its own: a scored event keeps it
    assert online.trending(t + 1.0).tolist() != got.tolist()


KINDS = ["view", "click", "view", "dislike", "hide", "impression"]
step = st.tuples(
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from([f"i{i}" for i in range(8)] + ["unknown"]),
    st.sampled_from(KINDS),
    st.floats(900.0, 1200.0).map(lambda t: round(t, 1)),  # some before the snapshot's cut-off, some out of order
    st.booleans(),  # read the user's state right after the event (the replay reads it at each scored event)
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=40), flip_at=st.integers(0, 40), keep=st.integers(1, 6))
def test_appending_events_gives_the_states_of_the_full_update(steps, flip_at, keep) -> None:
    """The shortcut for new positive events (append_user_events) gives, after every event and across a snapshot
    flip whose log positions cover the first events, the very states of the speed layer's full update."""
    speed = SpeedSettings(max_fresh_events=keep, recent_items=3)
    store = RowStore({"u1": user_row("u1", [5, 6, 7], [0, 1])})
    fast, full = (OnlineState(store, make_model(), speed, WEIGHTS) for _ in range(2))
    flipped = make_model("v2", cutoff_s=1100.0, seed=1)
    flipped.manifest["log_positions"] = {"0": min(flip_at, len(steps)) // 2}
    for n, (user, item, kind, t, read) in enumerate(steps):
        if n == flip_at:
            for online in (fast, full):
                online.switch(flipped)
        event = ev(n, user, item, t, kind=kind)
        fast.apply([event])
        full.apply([event])
        if read:
            with pytest.MonkeyPatch.context() as m:
                m.setattr("replay.online.append_user_events", lambda *a, **k: None)  # always the full update
                want = full.state(user, solve=False)
            assert fast.state(user, solve=False) == want
    fast.flush(solve=False)
    with pytest.MonkeyPatch.context() as m:
        m.setattr("replay.online.append_user_events", lambda *a, **k: None)
        full.flush(solve=False)
    assert fast.fresh == full.fresh


def test_appending_positive_events_takes_the_shortcut(model) -> None:
    """A new positive event on a state without feedback is appended (the shortcut runs, it does not bail out),
    giving what apply_user_events gives; a dislike or a redelivered position falls back (None)."""
    speed = SpeedSettings()
    first = apply_user_events(None, [(ev(0, "u1", "i3", 2000.0), (0, 0))], model, None, settings=speed,
                              solve_vector=False)  # fmt: skip
    later = [(ev(1, "u1", "i4", 2010.0, kind="click"), (0, 1))]
    got = append_user_events(first, later, model, settings=speed)
    assert got is not None
    assert got == apply_user_events(first, later, model, None, settings=speed, solve_vector=False)
    dislike, again = ev(1, "u1", "i4", 2010.0, kind="dislike"), ev(1, "u1", "i4", 2010.0)
    assert append_user_events(first, [(dislike, (0, 1))], model, settings=speed) is None
    assert append_user_events(first, [(again, (0, 0))], model, settings=speed) is None
