"""The speed layer's feedback state: hides, dislikes and impressions in the user's fresh state."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from lambdarec.events import Event
from lambdarec.model.rows import FRESH_FORMAT, FreshUser
from lambdarec.settings import SpeedSettings
from lambdarec.store.codec import decode_fresh_user, encode_fresh
from lambdarec.store.erasure import fresh_rows
from lambdarec.store.errors import CorruptRowError
from speed_layer.apply import BatchInputs, compute_states, group_events
from speed_layer.state import apply_user_events
from tests.factories import snapshot_model

SPEED = SpeedSettings()
T = 1_764_400_000.0


def ev(n: int, etype: str, item: str = "i1", ts: float = T, items: tuple[str, ...] = ()) -> tuple[Event, tuple]:
    event = Event(event_id=f"e{n}", user_id="u1", item_id=item, event_type=etype, timestamp=ts + n, item_ids=items)
    return event, (0, n)


def apply(state: FreshUser | None, *events: tuple[Event, tuple], settings: SpeedSettings = SPEED) -> FreshUser:
    out = apply_user_events(state, list(events), None, None, settings=settings, default_weights={"view": 1.0})
    assert out is not None
    return out


def test_hides_dislikes_and_impressions_are_kept_in_the_fresh_state() -> None:
    state = apply(None, ev(1, "hide", "i1"), ev(2, "dislike", "i2"), ev(3, "impression", items=("i3", "i4", "i1")))
    assert state.hidden == {"i1": T + 1} and state.disliked == {"i2": T + 2}
    assert state.shown == {"i3": [T + 3], "i4": [T + 3], "i1": [T + 3]}
    assert state.events == [] and state.format == FRESH_FORMAT
    state = apply(state, ev(4, "impression", items=("i3",)))
    assert state.shown["i3"] == [T + 3, T + 4]


def test_a_positive_event_clears_the_items_impressions_and_takes_a_dislike_back_but_not_a_hide() -> None:
    state = apply(None, ev(1, "hide", "i1"), ev(2, "dislike", "i2"), ev(3, "impression", items=("i1", "i2", "i3")))
    state = apply(state, ev(4, "view", "i2"), ev(5, "view", "i1"))
    assert state.disliked == {} and state.hidden == {"i1": T + 1}
    assert state.shown == {"i3": [T + 3]}
    assert [e[0] for e in state.events] == ["i2", "i1"]


def test_feedback_is_bounded_newest_kept() -> None:
    speed = SpeedSettings(
        feedback={"max_hidden": 2, "max_disliked": 1, "max_shown_items": 2, "impressions_per_item": 3}
    )
    events = [ev(n, "hide", f"h{n}") for n in range(4)] + [ev(4 + n, "dislike", f"d{n}") for n in range(3)]
    events += [ev(7 + n, "impression", items=("a", "b") if n < 5 else ("c",)) for n in range(6)]
    state = apply(None, *events, settings=speed)
    assert state.hidden == {"h2": T + 2, "h3": T + 3} and state.disliked == {"d2": T + 6}
    assert state.shown == {"b": [T + 9, T + 10, T + 11], "c": [T + 12]}  # a ties b on time: by id
    old = apply(None, ev(1, "impression", items=("x",)), settings=speed)
    later = apply(old, ev(1 + 8 * 86400, "view", "y"), settings=speed)  # impressions_kept_s: 7 days
    assert later.shown == {}


def test_feedback_alone_does_not_solve_the_vector_again() -> None:
    model = snapshot_model(version="v1")
    events = [ev(1, "view", "i1"), ev(2, "impression", items=("i2", "i3"))]
    inputs = BatchInputs(model, {}, {}, {}, {"view": 1.0}, SPEED, {})
    (first,), _, _ = compute_states(*group_events(events[:1]), inputs)
    assert first.vector is not None and first.basis == "v1"
    inputs = BatchInputs(model, {"u1": first}, {}, {}, {"view": 1.0}, SPEED, {})
    (second,), _, poison = compute_states(*group_events(events[1:]), inputs)
    assert not poison and second.vector is first.vector and second.events is first.events
    assert second.shown == {"i2": [T + 2], "i3": [T + 2]}
    np.testing.assert_array_equal(second.vector, first.vector)


def test_fresh_state_format_1_rows_still_decode_and_newer_formats_are_refused() -> None:
    class FormatOne(msgspec.Struct, kw_only=True):  # the stored shape before feedback existed
        user_id: str
        events: list[tuple[str, float, float]] = []
        recent: list[tuple[str, float]] = []
        vector: list[float] | None = None
        basis: str | None = None
        positions: dict[str, int] = {}
        updated_at: float = 0.0

    old = msgspec.msgpack.encode(FormatOne(user_id="u1", events=[("i1", T, 1.0)], vector=[0.5], basis="v1"))
    state = decode_fresh_user(old)
    assert (state.format, state.hidden, state.disliked, state.shown) == (1, {}, {}, {})
    assert state.events == [("i1", T, 1.0)] and state.vector == [0.5]
    new = apply(state, ev(1, "hide", "i9"))
    assert decode_fresh_user(encode_fresh(new)) == new
    future = encode_fresh(msgspec.structs.replace(new, format=FRESH_FORMAT + 1))
    with pytest.raises(CorruptRowError, match="format 3"):
        fresh_rows([("u1", future, None)])
