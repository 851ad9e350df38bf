"""Poison records and repeated event ids on both backends (issue 12, findings 2 and 6).

SQLite store + SQLite log (embedded) and Cassandra store + Kafka log (real servers), like ``test_speed``.
"""

# ruff: noqa: F811  (the backend fixtures of test_speed are imported by name and requested as arguments)

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

import speed_layer.apply as apply_module
from lambdarec.eventlog import open_log
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.rank.trending import total_counts
from lambdarec.store import open_store
from speed_layer.consumer import ConsumerHaltedError, SpeedConsumer
from tests.integration.raw_log import append_raw
from tests.integration.speed.test_speed import (  # noqa: F401  (fixtures)
    T0,
    assert_state_matches,
    drain,
    log_file,
    make_events,
    publish,
    reference,
    settings,
)

POISON = [
    b'{"event_id":"p1","user_id":"u1","item_id":"i1","event_type":"view","timestamp":1e30}',
    b'{"event_id":"p2","user_id":"u1","item_id":"i1","event_type":"view","timestamp":' + b"1" * 30 + b"}",
    b'{"event_id":"p3","user_id":"u1","item_id":"i1","event_type":"view","timestamp":1706745600,"x":'
    + b"[" * 5000
    + b"]" * 5000
    + b"}",
    b'{"event_id":"p4","user_id":"attacker","item_id":"i5","event_type":"click","timestamp":1706745660,"weight":1e308}',
]


def rewind(settings) -> None:
    """Move the group's committed positions back to 0, as if the consumer died before committing anything."""
    with open_log(settings) as log, log.consumer() as c:
        deadline = time.time() + 60
        partitions = set(log.end_offsets())
        while c.assignment() != partitions and time.time() < deadline:
            c.poll(max_records=1, timeout_ms=200)
        c.commit({p: 0 for p in partitions})


def test_poison_records_are_dead_lettered_once_and_the_consumer_moves_on(settings, log_file) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, _ = make_events(2_000, T0 + 60, seed=11, bad_share=0)
    mixed = lines[:700] + POISON + lines[700:]
    append_raw(settings, mixed)
    stats = drain(settings)
    assert (stats["processed"], stats["dead_lettered"]) == (len(lines), len(POISON))
    rewind(settings)  # a crash after the dead letters, before the commit: every record comes again
    again = drain(settings)
    assert again["dead_lettered"] == len(POISON)  # counted by the consumer, but not written twice
    with open_store(settings) as store, open_log(settings) as log:
        dead = log.read_dead_letters(limit=100)
        assert sorted(d.value for d in dead) == sorted(POISON)
        reasons = " | ".join(d.reason for d in dead)
        assert "out of range" in reasons and "nested" in reasons and "events.max_weight" in reasons
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        assert_state_matches(store, *reference(settings, lines, model, store))


def test_a_record_whose_application_raises_is_isolated(settings, log_file, monkeypatch) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    lines, _ = make_events(1_000, T0 + 60, seed=12, bad_share=0)
    poison = json.dumps(
        {"event_id": "boom", "user_id": "u3", "item_id": "i-poison", "event_type": "view", "timestamp": T0 + 100}
    ).encode()
    real_apply = apply_module.apply_user_events

    def apply(state, events, *args, **kwargs):  # a bug that only this record's data triggers
        if any(event.item_id == "i-poison" for event, _ in events):
            raise ZeroDivisionError("float division by zero")
        return real_apply(state, events, *args, **kwargs)

    monkeypatch.setattr(apply_module, "apply_user_events", apply)
    append_raw(settings, [*lines[:500], poison, *lines[500:]])
    stats = drain(settings)
    assert (stats["processed"], stats["failed"], stats["dead_lettered"]) == (len(lines), 1, 1)
    with open_store(settings) as store, open_log(settings) as log:
        (dead,) = log.read_dead_letters(limit=10)
        assert dead.value == poison and "ZeroDivisionError" in dead.reason and dead.source is not None
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        assert_state_matches(store, *reference(settings, lines, model, store))
        assert "i-poison" not in total_counts(store.read_trending(None), T0 + 1e4, 21600)
    monkeypatch.undo()  # the bug is fixed: the producer resends the event under the same id
    append_raw(settings, [poison.replace(b"i-poison", b"i-fixed")])
    assert drain(settings)["processed"] == 1
    with open_store(settings) as store:
        assert ("i-fixed", T0 + 100) in [(i, ts) for i, ts, _ in store.read_fresh_users(["u3"])["u3"].events]


def test_a_bug_that_fails_every_record_stops_the_consumer_without_dead_lettering_the_log(
    settings, log_file, monkeypatch
) -> None:
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    settings = settings.model_copy(
        update={"events": settings.events.model_copy(update={"max_consecutive_failures": 5})}
    )
    lines, _ = make_events(300, T0 + 60, seed=13, bad_share=0)
    append_raw(settings, lines)

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'item_factors'")

    monkeypatch.setattr(apply_module, "apply_user_events", broken)
    with SpeedConsumer(settings) as c, pytest.raises(ConsumerHaltedError, match="max_consecutive_failures") as info:
        c.run(until_idle_s=3.0)
    assert "AttributeError" in str(info.value)
    with open_log(settings) as log:
        assert log.read_dead_letters(limit=10) == []
        with log.consumer() as member:
            assert sum(member.lag().values()) == len(lines)  # nothing committed: the records wait for the fix


def event(event_id: str, user: str, item: str, ts: float, etype: str = "click") -> bytes:
    return json.dumps(
        {"event_id": event_id, "user_id": user, "item_id": item, "event_type": etype, "timestamp": ts}
    ).encode()


def applied_by_two(settings, lines: list[bytes]) -> int:
    """``lines`` appended, then drained by two members of one group: how many events they applied."""
    consumers = [SpeedConsumer(settings), SpeedConsumer(settings)]
    try:
        append_raw(settings, lines)
        deadline = time.time() + 60
        while time.time() < deadline:
            for c in consumers:
                c.step()
            with open_log(settings) as log, log.consumer() as probe:
                if sum(probe.lag().values()) == 0:
                    break
        return sum(c.stats.processed for c in consumers)
    finally:
        for c in consumers:
            c.close()


def with_dedup(settings, dedup: str):  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"events": settings.events.model_copy(update={"dedup": dedup})})


def test_a_repeated_event_id_changes_nothing_across_restarts_and_consumers(settings, log_file) -> None:
    """``events.dedup = "store"``: the ids claimed in the store, for any user."""
    settings = with_dedup(settings, "store")
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    once = event("dup-1", "u5", "i7", T0 + 60)
    append_raw(settings, [once] * 5)
    first = drain(settings)
    assert (first["processed"], first["duplicates"]) == (1, 4)
    append_raw(settings, [once, event("dup-1", "u6", "i7", T0 + 61)])  # after a restart; another user's partition too
    second = drain(settings)
    assert (second["processed"], second["duplicates"]) == (0, 2)
    lines = [event("dup-1", f"u{n}", "i7", T0 + 62) for n in range(40)] + [event("new-1", "u5", "i7", T0 + 63)]
    assert applied_by_two(settings, lines) == 1  # only new-1
    with open_store(settings) as store:
        state = store.read_fresh_users(["u5", "u6"])
        assert [item for item, _, _ in state["u5"].events] == ["i7", "i7"]  # dup-1 once, new-1 once
        assert "u6" not in state
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        w = model.event_weights["click"]
        counts = total_counts(store.read_trending(None), T0 + 63, 21600)
        assert counts["i7"] == pytest.approx(
            w * 2 ** (-(T0 + 63 - (T0 + 60)) / 21600) + w, rel=1e-9
        )  # two events, not 47


def test_with_ids_in_the_state_a_resend_changes_nothing_across_restarts_and_consumers(
    settings, log_file, monkeypatch
) -> None:
    """``events.dedup = "auto"`` on a new namespace (as ``"state"``): the same, found in the users' states with no
    claim request; the same id from another user is that user's own event."""
    settings = with_dedup(settings, "auto")

    def no_claims(self, good):  # type: ignore[no-untyped-def]
        raise AssertionError(f"claimed {len(good)} ids in the store")

    monkeypatch.setattr(SpeedConsumer, "_first_claims", no_claims)
    publish(settings, log_file, datetime.fromtimestamp(T0, UTC))
    once = event("dup-1", "u5", "i7", T0 + 60)
    append_raw(settings, [once] * 5)
    first = drain(settings)
    assert (first["processed"], first["duplicates"]) == (1, 4)
    append_raw(settings, [once, event("dup-1", "u6", "i7", T0 + 61)])  # after a restart; u6's own event
    second = drain(settings)
    assert (second["processed"], second["duplicates"]) == (1, 1)
    assert applied_by_two(settings, [once] * 20 + [event("new-1", "u5", "i7", T0 + 63)]) == 1  # only new-1
    with open_store(settings) as store:
        state = store.read_fresh_users(["u5", "u6"])
        assert [item for item, _, _ in state["u5"].events] == ["i7", "i7"]  # dup-1 once, new-1 once
        assert [item for item, _, _ in state["u6"].events] == ["i7"]
        model = SnapshotModel.load(store, store.current_version(max_age_s=0))
        w = model.event_weights["click"]
        counts = total_counts(store.read_trending(None), T0 + 63, 21600)
        expected = sum(w * 2 ** (-(T0 + 63 - t) / 21600) for t in (T0 + 60, T0 + 61, T0 + 63))
        assert counts["i7"] == pytest.approx(expected, rel=1e-9)  # three events, not 27
