"""Repeated event ids looked up in the user's own fresh state (``events.dedup = "state"``): a resend changes
nothing, with no claim request; the same id from another user is applied; the ids kept are bounded by the window
and the per-user cap; a namespace that ran with store claims can move to state lookups (issue 17)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import speed_layer.consumer as consumer_module
from lambdarec.eventlog import open_log
from lambdarec.events import Event
from lambdarec.model.rows import FreshUser
from lambdarec.settings import Settings
from lambdarec.store.sqlite import SQLiteStore
from speed_layer.consumer import SpeedConsumer
from speed_layer.seen import id_hash, recorded, repeated

T0 = 1_706_745_600.0  # 2024-02-01


def ev(event_id: str, user: str, etype: str = "view") -> Event:
    return Event(event_id=event_id, user_id=user, item_id="i1", event_type=etype, timestamp=T0)


def test_a_users_own_id_is_a_repeat_and_the_same_id_from_another_user_is_not() -> None:
    state = FreshUser(user_id="u1", positions={"0": 10}, seen_ids=[(id_hash("e1"), int(T0))])
    good = [(ev("e1", "u1"), (0, 10)), (ev("e1", "u2"), (0, 11)), (ev("e2", "u1"), (0, 12))]
    assert repeated(good, {"u1": state}) == {(0, 10)}


def test_a_redelivered_record_is_left_to_the_positions_and_a_repeat_within_the_poll_is_found() -> None:
    state = FreshUser(user_id="u1", positions={"0": 10}, seen_ids=[(id_hash("e1"), int(T0))])
    good = [
        (ev("e1", "u1"), (0, 9)),  # applied before (its position): a redelivery, skipped by the positions
        (ev("e3", "u1"), (0, 10)),
        (ev("e3", "u1"), (0, 11)),  # the same id again in this poll
        (ev("e4", "u9"), (1, 0)),
        (ev("e4", "u9"), (1, 1)),  # a user with no state yet
        (ev("e5", "u1", "impression"), (0, 12)),
        (ev("e5", "u1", "impression"), (0, 13)),  # impressions: the store's claims decide
    ]
    assert repeated(good, {"u1": state}) == {(0, 11), (1, 1)}


def test_ids_are_kept_within_the_window_newest_last_and_at_most_the_cap() -> None:
    old = [(id_hash("a"), int(T0) - 100), (id_hash("b"), int(T0) - 10)]
    kept = recorded(old, ["c", "d"], T0, window_s=50, cap=10)
    assert kept == [(id_hash("b"), int(T0) - 10), (id_hash("c"), int(T0)), (id_hash("d"), int(T0))]
    assert recorded(kept, ["e"], T0, window_s=50, cap=2) == [(id_hash("d"), int(T0)), (id_hash("e"), int(T0))]
    assert id_hash("e1") == id_hash("e1") != id_hash("e2")
    assert -(2**63) <= id_hash("e1") < 2**63  # msgpack's int64


class CountingStore(SQLiteStore):
    """The SQLite store, counting the event ids the consumer claims in it."""

    claimed = 0

    def claim_event_ids_scoped(self, claims, ttl_s):  # type: ignore[no-untyped-def]
        self.claimed += sum(len(ids) for ids in claims.values())
        return super().claim_event_ids_scoped(claims, ttl_s)


def settings_for(tmp_path: Path, dedup: str, window_s: float = 86400.0) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "speed": {"poll_max_records": 1000, "max_wait_ms": 20},
            "events": {"dedup": dedup, "dedup_window_s": window_s},
        }
    )


def line(event_id: str, user: str, item: str, ts: float) -> bytes:
    return json.dumps(
        {"event_id": event_id, "user_id": user, "item_id": item, "event_type": "click", "timestamp": ts}
    ).encode()


def send(settings: Settings, lines: list[tuple[str, str, str, float]]) -> None:
    with open_log(settings) as log:
        log.append([line(*x) for x in lines], keys=[x[1] for x in lines])


def drain(settings: Settings, store: SQLiteStore, n: int) -> SpeedConsumer:
    with SpeedConsumer(settings, store=store) as consumer:
        while consumer.stats.processed + consumer.stats.duplicates < n:
            assert consumer.step() > 0
    return consumer


def test_in_state_a_resend_changes_nothing_across_restarts_with_no_claim_in_the_store(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "state")
    store = CountingStore(settings.store)
    with store:
        send(settings, [("e1", "u1", "i1", T0), ("e1", "u1", "i1", T0), ("e2", "u1", "i2", T0 + 1)])
        first = drain(settings, store, 3)
        assert (first.stats.processed, first.stats.duplicates) == (2, 1)
        before = store.read_fresh_users(["u1"])["u1"]
        assert sorted(before.seen_ids) == sorted((id_hash(e), before.seen_ids[0][1]) for e in ("e1", "e2"))
        # after a restart: both resent, and another user's event under a used id (not a repeat of theirs)
        send(settings, [("e1", "u1", "i1", T0), ("e2", "u1", "i2", T0 + 1), ("e1", "u2", "i3", T0 + 2)])
        second = drain(settings, store, 3)
        assert (second.stats.processed, second.stats.duplicates) == (1, 2)
        after = store.read_fresh_users(["u1", "u2"])
        assert after["u1"].events == before.events  # nothing of the resends applied
        assert [item for item, _, _ in after["u2"].events] == ["i3"]
        assert store.claimed == 0  # no claim request: the ids were found in the states read anyway


def test_a_namespace_that_claimed_in_the_store_finds_its_resends_once_it_moves_to_state(tmp_path: Path) -> None:
    store = CountingStore(settings_for(tmp_path, "store").store)
    with store:
        send(settings_for(tmp_path, "store"), [("e1", "u1", "i1", T0), ("e2", "u2", "i2", T0)])
        drain(settings_for(tmp_path, "store"), store, 2)
        assert store.claimed == 2
        claimed_before = store.claimed
        moved = settings_for(tmp_path, "state")
        send(moved, [("e1", "u1", "i1", T0), ("e2", "u2", "i2", T0), ("e3", "u1", "i3", T0 + 1)])
        consumer = drain(moved, store, 3)
        assert (consumer.stats.processed, consumer.stats.duplicates) == (1, 2)
        assert store.claimed == claimed_before
        assert [item for item, _, _ in store.read_fresh_users(["u1"])["u1"].events] == ["i1", "i3"]


def test_auto_claims_while_an_earlier_releases_claims_may_be_live_then_looks_up_the_states(
    tmp_path: Path, monkeypatch
) -> None:
    window = 600.0
    store = CountingStore(settings_for(tmp_path, "store", window).store)
    with store:
        send(settings_for(tmp_path, "store", window), [("e1", "u1", "i1", T0)])
        drain(settings_for(tmp_path, "store", window), store, 1)  # as an earlier release: a claim, live 10 minutes
        auto = settings_for(tmp_path, "auto", window)
        send(auto, [("e1", "u1", "i1", T0), ("e2", "u1", "i2", T0 + 1)])
        claimed = store.claimed
        first = drain(auto, store, 2)
        assert (first.stats.processed, first.stats.duplicates) == (1, 1)
        assert store.claimed > claimed  # the claims' window is not over: claimed as before
        mark = store.state_dedup_from(window)
        assert time.time() < mark <= time.time() + window
        # the consumer's clock past the mark (the store's claims keep the real one)
        later = SimpleNamespace(time=lambda: time.time() + window + 1, monotonic=time.monotonic)
        monkeypatch.setattr(consumer_module, "time", later)
        claimed = store.claimed
        send(auto, [("e2", "u1", "i2", T0 + 1), ("e3", "u1", "i3", T0 + 2)])
        second = drain(auto, store, 2)
        assert (second.stats.processed, second.stats.duplicates) == (1, 1)
        assert store.claimed == claimed  # from the states alone now
        assert [item for item, _, _ in store.read_fresh_users(["u1"])["u1"].events] == ["i1", "i2", "i3"]


def test_auto_in_a_new_namespace_claims_nothing_from_the_first_poll(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "auto")
    store = CountingStore(settings.store)
    with store:
        send(settings, [("e1", "u1", "i1", T0), ("e1", "u1", "i1", T0)])
        consumer = drain(settings, store, 2)
        assert (consumer.stats.processed, consumer.stats.duplicates, store.claimed) == (1, 1, 0)


def test_a_state_keeps_its_events_ids_and_not_its_impressions() -> None:
    from lambdarec.settings import SpeedSettings
    from speed_layer.state import apply_user_events

    events = [(ev("c1", "u1", "click"), (0, 1)), (ev("m1", "u1", "impression"), (0, 2))]
    state = apply_user_events(None, events, None, None, settings=SpeedSettings(), appended_at=T0, seen=(60, 10))
    assert state is not None and state.seen_ids == [(id_hash("c1"), int(T0))]
    again = apply_user_events(state, [(ev("c2", "u1", "click"), (0, 3))], None, None, settings=SpeedSettings(),
                              appended_at=T0 + 100, seen=(60, 10))  # fmt: skip
    assert again is not None and again.seen_ids == [(id_hash("c2"), int(T0) + 100)]  # c1 is past the window
    assert apply_user_events(again, [(ev("c3", "u1", "click"), (0, 4))], None, None, settings=SpeedSettings(),
                             appended_at=T0 + 101).seen_ids == again.seen_ids  # fmt: skip
