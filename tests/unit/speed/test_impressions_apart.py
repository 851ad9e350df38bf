"""Impressions apart from positive events (``speed.feedback.own_consumer``): the look that tells them apart, the
impressions row, and the join serving makes, which must give the very impressions the one-consumer path keeps."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdarec.eventlog.base import Record
from lambdarec.events import Event
from lambdarec.events.peek import is_impression
from lambdarec.model.rows import FreshUser, ShownItems
from lambdarec.model.shown import join_shown
from lambdarec.settings import LogSettings, Settings, SpeedSettings
from speed_layer.feedback import Feedback
from speed_layer.impression_consumer import lower_priority
from speed_layer.impressions import ImpressionPath, PositivePath, apply_impressions
from speed_layer.state import apply_user_events

T = 1_764_400_000.0
SPEED = SpeedSettings()
WEIGHTS = {"view": 1.0, "click": 2.0}
LOG = LogSettings()


def ev(n: int, etype: str, item: str = "i1", items: tuple[str, ...] = (), ts: float | None = None):
    event = Event(event_id=f"e{n}", user_id="u1", item_id=item, event_type=etype,
                  timestamp=T + n if ts is None else ts, item_ids=items)  # fmt: skip
    return event, (0, n)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"event_type":"impression","user_id":"u1","item_ids":["i1"]}', True),
        (b'{ "user_id": "u1", "item_ids": ["i1"],  "event_type" : "impression" }', True),
        (b'{"event_type":"click","user_id":"u1","item_id":"impression"}', False),  # the word elsewhere
        (b'{"event_type":"impression-ish","user_id":"u1","item_id":"i1"}', False),
        (b'["impression"]', False),  # not an object: the positive-event consumer dead-letters it
        (b'{"event_type":"impression", broken', False),  # does not decode: likewise
        (b'{"event_type": 7, "x": "impression"}', False),
        (b"", False),
    ],
)
def test_an_impression_is_told_apart_by_its_event_type_alone(raw: bytes, expected: bool) -> None:
    assert is_impression(raw) is expected


def record(n: int, value: dict) -> Record:
    return Record(0, n, "u1", json.dumps(value).encode(), 0)


def test_the_positive_path_skips_impressions_only_when_they_have_their_own_consumer_and_polls_more() -> None:
    records = [record(n, {"event_type": "impression" if n % 10 else "click"}) for n in range(100)]
    together = PositivePath(SpeedSettings(poll_max_records=100), LOG)
    assert together.of(records) == records and together.size == 100
    apart = PositivePath(SpeedSettings(poll_max_records=100, feedback={"own_consumer": True}), LOG)
    assert [r.offset for r in apart.of(records)] == list(range(0, 100, 10))
    assert apart.size == 1000  # a tenth were positive: ten times the records for a batch of 100 positive events
    capped = PositivePath(SpeedSettings(poll_max_records=100, feedback={"own_consumer": True,
                                                                        "apart_poll_records": 300}), LOG)  # fmt: skip
    capped.of(records)
    assert capped.size == 300
    capped.of(records[:50])  # a short poll (the log ran dry) says nothing about the share
    assert capped.size == 300
    own_topic = LogSettings(impressions_topic="impressions")  # ingest sends them elsewhere: any left here apply
    elsewhere = PositivePath(SpeedSettings(poll_max_records=100, feedback={"own_consumer": True}), own_topic)
    assert elsewhere.of(records) == records and elsewhere.size == 100


def test_impressions_rows_are_idempotent_by_log_position_and_bounded() -> None:
    limits = SpeedSettings(feedback={"impressions_per_item": 2}).feedback
    row = apply_impressions(None, [ev(1, "impression", items=("i1", "i2")), ev(2, "impression", items=("i1",))], limits)
    assert row == ShownItems(user_id="u1", shown={"i1": [T + 1, T + 2], "i2": [T + 1]}, positions={"0": 3},
                             updated_at=T + 2)  # fmt: skip
    assert apply_impressions(row, [ev(2, "impression", items=("i1",))], limits) is None  # a redelivery
    newer = apply_impressions(row, [ev(2, "impression", items=("i1",)), ev(3, "impression", items=("i1",))], limits)
    assert newer is not None and newer.shown["i1"] == [T + 2, T + 3] and newer.positions == {"0": 4}


def test_the_join_drops_impressions_at_or_before_the_items_newest_positive_event() -> None:
    fresh = FreshUser(user_id="u1", events=[("i1", T + 5, 1.0)], recent=[("i2", T + 3)], shown={"i4": [T + 1]})
    row = ShownItems(user_id="u1", shown={"i1": [T + 4, T + 5, T + 6], "i2": [T + 2], "i3": [T + 1], "i4": [T + 2]})
    joined = join_shown(fresh, row, "u1")
    assert joined is not None and joined.shown == {"i1": [T + 6], "i3": [T + 1], "i4": [T + 1, T + 2]}
    again = ShownItems(user_id="u1", shown={"i4": [T + 1, T + 3]})  # i4 at T+1: the one the fresh row holds
    assert join_shown(fresh, again, "u1").shown == {"i4": [T + 1, T + 3]}
    assert joined.events == fresh.events and fresh.shown == {"i4": [T + 1]}  # the stored row is left as it was
    only = join_shown(None, row, "u1")  # impressions but no fresh row yet
    assert only is not None and only.shown == row.shown and only.vector is None
    assert join_shown(fresh, None, "u1") is fresh and join_shown(fresh, ShownItems(user_id="u1"), "u1") is fresh


def test_an_impression_that_arrives_after_a_later_click_does_not_count_in_event_time() -> None:
    """Out of log order, event time decides (the one-consumer path counts it: it cleared the item's impressions
    when the click arrived, before this one came in)."""
    fresh = apply_user_events(None, [ev(2, "click", "i1", ts=T + 10)], None, None, settings=SPEED,
                              default_weights=WEIGHTS)  # fmt: skip
    row = apply_impressions(None, [ev(3, "impression", items=("i1",), ts=T + 5)], SPEED.feedback)
    joined = join_shown(fresh, row, "u1")
    assert joined is not None and joined.shown == {}
    tie = apply_impressions(None, [ev(3, "impression", items=("i1",), ts=T + 10)], SPEED.feedback)
    assert join_shown(fresh, tie, "u1").shown == {}  # at the click's very time: shown, then clicked


kinds = st.sampled_from(["view", "click", "impression", "impression", "impression", "hide", "dislike"])
items = st.sampled_from(["i1", "i2", "i3", "i4"])


steps_ = st.lists(st.tuples(kinds, items, st.lists(items, min_size=1, max_size=4, unique=True), st.integers(0, 40)))


@settings(max_examples=200, deadline=None)
@given(steps_, st.integers(1, 5))
def test_impressions_apart_give_the_impressions_the_one_consumer_path_keeps(steps, batches) -> None:
    """Any events in event-time order, in any batching: the positive-event consumer's fresh row joined
    to the impressions consumer's row holds the same impressions as one consumer applying everything in order."""
    events = []
    times = sorted(ts for *_, ts in steps)
    for n, ((kind, item, shown, _), ts) in enumerate(zip(steps, times, strict=True)):
        events.append(ev(n, kind, item, tuple(shown) if kind == "impression" else (), T + ts + n / 1000))
    one = apply_user_events(None, events, None, None, settings=SPEED, default_weights=WEIGHTS)
    fresh, row = None, None
    size = max(1, len(events) // batches)
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        others = [(e, p) for e, p in chunk if e.event_type != "impression"]
        fresh = apply_user_events(fresh, others, None, None, settings=SPEED, default_weights=WEIGHTS) or fresh
        row = apply_impressions(row, [(e, p) for e, p in chunk if e.event_type == "impression"], SPEED.feedback) or row
    joined = join_shown(fresh, row, "u1")
    assert (joined.shown if joined else {}) == (one.shown if one else {})


def reference_row(row: ShownItems | None, events, limits) -> ShownItems | None:  # type: ignore[no-untyped-def]
    """The impressions row as the one-consumer path keeps impressions: each event added through ``Feedback`` in
    log order, then the whole row bounded (what :func:`apply_impressions` must equal, whatever it skips)."""
    row = row or ShownItems(user_id="u1")
    positions, feedback, newest, applied = dict(row.positions), Feedback({}, {}, dict(row.shown)), row.updated_at, 0
    for event, (partition, offset) in events:
        if offset < positions.get(str(partition), 0):
            continue
        positions[str(partition)], newest, applied = offset + 1, max(newest, event.timestamp), applied + 1
        feedback.add(event)
    if not applied:
        return None
    return ShownItems(user_id="u1", shown=feedback.bounded(limits, newest).shown, positions=positions,
                      updated_at=newest)  # fmt: skip


many_items = st.sampled_from([f"i{k}" for k in range(8)])
shown_steps = st.lists(st.tuples(st.lists(many_items, min_size=1, max_size=5, unique=True), st.integers(0, 100)),
                       max_size=40)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(shown_steps, st.integers(1, 6), st.integers(1, 4), st.integers(0, 6), st.integers(5, 60), st.booleans())
def test_an_impressions_row_is_the_rows_of_the_one_consumer_path_under_tight_bounds(
    steps, batches, per_item, max_items, kept_s, redeliver
) -> None:  # type: ignore[no-untyped-def]
    """Out-of-order event times, redeliveries, any batching, bounds that bite: the same row as applying each
    event through ``Feedback`` and bounding the whole row."""
    limits = SpeedSettings(feedback={"impressions_per_item": per_item, "max_shown_items": max_items,
                                     "impressions_kept_s": kept_s}).feedback  # fmt: skip
    events = [ev(n, "impression", items=tuple(shown), ts=T + ts) for n, (shown, ts) in enumerate(steps)]
    ours = ref = None
    size = max(1, len(events) // batches)
    for start in range(0, len(events), size):
        chunk = events[max(0, start - size // 2) if redeliver else start : start + size]  # some applied before
        ours = apply_impressions(ours, chunk, limits) or ours
        ref = reference_row(ref, chunk, limits) or ref
    assert ours == ref


def test_the_impressions_consumer_polls_impressions_poll_records_at_once() -> None:
    path = ImpressionPath(SpeedSettings(poll_max_records=100, feedback={"impressions_poll_records": 5000}), LOG)
    assert path.size == 5000 and SpeedSettings().feedback.impressions_poll_records == 10000


def _niceness_after_lowering(settings) -> int:  # type: ignore[no-untyped-def]
    before = os.nice(0)
    lower_priority(settings)
    return os.nice(0) - before  # read back from the process itself


@pytest.mark.parametrize("nice", [0, 7])
def test_the_impressions_consumer_lowers_its_cpu_priority_by_impressions_nice(nice: int) -> None:
    settings = Settings.load(overrides={"speed": {"feedback": {"impressions_nice": nice}}})
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a process of its own: this one keeps its priority
        assert pool.apply(_niceness_after_lowering, (settings,)) == min(nice, 19 - os.nice(0))
    assert Settings.load().speed.feedback.impressions_nice == 10


def test_lowering_the_priority_is_skipped_at_0_and_never_fails_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "nice", lambda n: calls.append(n) or 0)  # this process's priority is never touched
    assert lower_priority(Settings.load(overrides={"speed": {"feedback": {"impressions_nice": 0}}})) is None
    assert calls == []  # 0: nothing to raise, no call

    def refused(n: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refused)  # a sandbox that forbids it: the consumer runs on, at its priority
    assert lower_priority(Settings.load()) is None
    monkeypatch.delattr(os, "nice")  # a platform without it
    assert lower_priority(Settings.load()) is None
