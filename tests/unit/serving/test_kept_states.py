"""Fresh states kept in memory until the store lists a change (serving_layer.kept_states): what is kept, when a
kept state is read again, and that nothing is used while the change list is not read in time."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from lambdarec.model.rows import FreshUser
from lambdarec.store.changes import FreshChange, decode_users, encode_users, rows_of
from serving_layer import kept_states
from serving_layer.kept_states import KeptStates, state_bytes

MB = 1 << 20


def change(*users: str, at_s: float | None = None) -> FreshChange:
    at_s = time.time() if at_s is None else at_s
    return FreshChange(uuid.uuid1(), at_s, list(users))


def polled(kept: KeptStates, *changes: FreshChange) -> None:
    """One poll answered now with ``changes`` (what ``watch`` does for each poll)."""
    kept.apply(list(changes), time.time())
    kept._answered = time.monotonic()


def state(user: str) -> FreshUser:
    return FreshUser(user_id=user, recent=[("i1", 1.0)], updated_at=1.0)


def test_nothing_is_kept_before_the_change_list_answers() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    hits, to_read, epoch = kept.take(["u1", "u2"])
    assert (hits, to_read, epoch) == ({}, ["u1", "u2"], None)
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    assert len(kept) == 0


def test_a_kept_state_is_used_until_a_change_names_its_user() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    polled(kept)
    u1, u2 = state("u1"), state("u2")
    _, to_read, epoch = kept.take(["u1", "u2", "u3"])
    kept.keep(to_read, {"u1": u1, "u2": u2}, epoch)  # u3 has no state: kept as such
    hits, to_read, _ = kept.take(["u1", "u2", "u3"])
    assert hits == {"u1": u1, "u2": u2} and hits["u1"] is u1 and to_read == []
    polled(kept, change("u1", "u3"))
    hits, to_read, _ = kept.take(["u1", "u2", "u3"])
    assert hits == {"u2": u2} and to_read == ["u1", "u3"]


def test_a_user_who_changed_lately_is_read_on_every_request() -> None:
    """An active user sees each new event at once (no poll in between); a read at LOCAL_ONE right after a change
    may reach a replica the quorum write did not wait for."""
    kept = KeptStates(MB, 30.0, 0.05, 2.0, active_s=0.05)
    polled(kept, change("u1"))
    _, to_read, epoch = kept.take(["u1", "u2"])
    kept.keep(to_read, {"u1": state("u1"), "u2": state("u2")}, epoch)
    assert kept.take(["u1", "u2"])[1] == ["u1"]  # u2 kept; u1 read again on its next request
    time.sleep(0.06)  # no change to u1 for active_s: its next read is kept
    _, to_read, epoch = kept.take(["u1"])
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    assert kept.take(["u1"])[1] == []


def test_a_read_begun_before_a_change_is_applied_is_not_kept() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    polled(kept)
    _, to_read, epoch = kept.take(["u1"])
    polled(kept, change("u9"))  # any change applied while the read was out: its answer may predate the write
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    assert kept.take(["u1"])[1] == ["u1"]


def test_a_change_seen_before_is_not_applied_again() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    seen = change("u9")
    polled(kept, seen)
    _, to_read, epoch = kept.take(["u1"])
    polled(kept, seen)  # read again in the overlap window: nothing new, the read may be kept
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    assert kept.take(["u1"])[1] == []


def test_nothing_kept_is_used_once_the_polls_are_late(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_states, "STALE_MIN_S", 0.0)  # late after 4 polls of 10 ms (by default: 1 s at least)
    kept = KeptStates(MB, 30.0, 0.01, 2.0)
    assert kept.stale_s == pytest.approx(0.04)
    polled(kept)
    _, to_read, epoch = kept.take(["u1"])
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    assert kept.take(["u1"])[1] == []
    time.sleep(kept.stale_s + 0.02)  # no poll answered for 4 intervals: a change may be unread
    assert KeptStates(MB, 30.0, 0.01, 2.0).stale_s == 0.04 and kept_states.KeptStates(MB, 30.0, 0.5, 2.0).stale_s == 2.0
    assert not kept.live()
    assert kept.take(["u1"]) == ({}, ["u1"], None)


def test_a_kept_state_is_read_again_past_its_longest_keep() -> None:
    kept = KeptStates(MB, 0.05, 0.01, 2.0)
    polled(kept)
    _, to_read, epoch = kept.take(["u1"])
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    time.sleep(0.06)
    polled(kept)
    assert kept.take(["u1"])[1] == ["u1"]


def test_the_least_recently_used_go_first_past_the_memory_bound_and_an_erasure_drops_at_once() -> None:
    kept = KeptStates(2 * state_bytes(state("u1")), 30.0, 0.05, 2.0)
    polled(kept)
    for user in ("u1", "u2"):
        _, to_read, epoch = kept.take([user])
        kept.keep(to_read, {user: state(user)}, epoch)
    kept.take(["u1"])  # u1 used: u2 is now the least recently used
    _, to_read, epoch = kept.take(["u3"])
    kept.keep(to_read, {"u3": state("u3")}, epoch)
    assert kept.take(["u1", "u2", "u3"])[1] == ["u2"]
    assert kept.bytes == 2 * state_bytes(state("u1"))
    kept.forget("u1")
    assert kept.take(["u1"])[1] == ["u1"] and kept.bytes == state_bytes(state("u3"))


def test_a_change_of_unknown_users_drops_every_kept_state() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    polled(kept)
    _, to_read, epoch = kept.take(["u1", "u2"])
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    polled(kept, FreshChange(uuid.uuid1(), time.time(), None))  # a listed row that did not decode
    assert kept.take(["u1", "u2"])[1] == ["u1", "u2"] and kept.bytes == 0


def test_the_polls_read_from_the_overlap_window_before_the_last_one() -> None:
    kept = KeptStates(MB, 30.0, 0.05, 2.0)
    assert kept.after_s(1000.0) == pytest.approx(998.0)
    kept.apply([], 1000.0)
    assert kept.after_s(1000.05) == pytest.approx(998.0)
    polled(kept)
    _, to_read, epoch = kept.take(["u1"])
    kept.keep(to_read, {"u1": state("u1")}, epoch)
    far = time.time() + 3600  # a poll after a gap longer than the list keeps changes: everything is read again
    assert kept.after_s(far) == pytest.approx(far - 2.0)
    assert len(kept) == 0


def test_watch_keeps_nothing_while_the_list_fails_and_resumes_when_it_answers() -> None:
    kept = KeptStates(MB, 30.0, 0.01, 2.0)
    answers: list[object] = [OSError("node down"), OSError("node down"), [change("u1")]]
    asked: list[float] = []
    live_when_asked: list[bool] = []

    async def read(after_s: float) -> list[FreshChange]:
        asked.append(after_s)
        live_when_asked.append(kept.live())
        outcome = answers.pop(0) if answers else []
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    async def scenario() -> bool:
        task = asyncio.create_task(kept.watch(read, 1.0))
        while len(asked) < 4:  # the two failures, the answer, and one poll after it
            await asyncio.sleep(0.005)
        live = kept.live()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return live

    live = asyncio.run(scenario())
    assert live_when_asked[:3] == [False, False, False]  # nothing kept is used until a poll has answered
    assert live_when_asked[3] and live
    assert asked[0] <= time.time() - 1.9  # the first poll reads the overlap window back


def test_the_stored_list_round_trips_and_splits_into_rows() -> None:
    assert decode_users(encode_users(["u1", "ü"])) == ["u1", "ü"]
    rows = rows_of([f"u{i}" for i in range(4500)] + ["u1"])
    assert [len(r) for r in rows] == [2000, 2000, 500]
