"""The ``EventLog`` contract: one suite, run against every backend through the ``make_log`` fixture.

A backend's test module subclasses ``EventLogContract`` and provides ``make_log``: a factory that opens the same
log (same directory or topic) each time it is called, as a restarted process would, with 3 partitions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from lambdarec.eventlog import CommitFailedError, Consumer, EventLog, Record, next_positions
from lambdarec.events import Event, parse_event

MakeLog = Callable[[], EventLog]
WAIT_S = 45.0
RUN = uuid.uuid4().hex[:8]  # consumer groups are named per run: a broker outlives test runs


def group(name: str) -> str:
    return f"{name}-{RUN}"


def events(n: int, users: int = 12, start: int = 0) -> list[Event]:
    """``n`` events spread over ``users`` users; ``context.seq`` numbers them in append order."""
    return [
        Event(
            event_id=f"e{i}",
            user_id=f"user-{i % users}",
            item_id=f"item-{i % 7}",
            event_type="view",
            timestamp=1_764_400_000.0 + i,
            context={"seq": i},
        )
        for i in range(start, start + n)
    ]


def drain(consumer: Consumer, want: int, timeout_s: float = WAIT_S) -> list[Record]:
    """Poll until ``want`` records arrived (or the time is up); then one more short poll to catch extras."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += consumer.poll(max_records=500, timeout_ms=200)
    out += consumer.poll(max_records=500, timeout_ms=300)
    return out


def first_halves(records: list[Record]) -> list[Record]:
    """The first half (by offset) of each partition's records."""
    out: list[Record] = []
    for p in {r.partition for r in records}:
        part = sorted((r for r in records if r.partition == p), key=lambda r: r.offset)
        out += part[: len(part) // 2]
    return out


def seq(record: Record) -> int:
    return int(parse_event(record.value).context["seq"])


@dataclass
class Member:
    """A consumer-group member on its own thread: polls, keeps records pending, commits them.

    ``done`` holds the records whose positions were committed: what a real consumer has finished with.
    With ``commit_each_poll`` False it commits only when partitions are revoked (and at close).
    """

    make_log: MakeLog
    group: str
    commit_each_poll: bool = True
    done: list[Record] = field(default_factory=list)
    pending: list[Record] = field(default_factory=list)
    assigned: set[int] = field(default_factory=set)
    ever_assigned: set[int] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _commit(self, consumer: Consumer, parts: set[int] | None = None) -> None:
        with self.lock:
            batch = [r for r in self.pending if parts is None or r.partition in parts]
            self.pending = [r for r in self.pending if r not in batch]
        try:
            consumer.commit(next_positions(batch))
        except CommitFailedError:
            return  # not ours any more: these records will be delivered again to the new owner
        with self.lock:
            self.done += batch

    def _run(self) -> None:
        log = self.make_log()
        consumer: Consumer | None = None
        try:
            consumer = log.consumer(self.group, on_revoke=lambda parts: self._commit(consumer, parts))  # type: ignore[arg-type]
            while not self.stop.is_set():
                records = consumer.poll(max_records=50, timeout_ms=100)
                with self.lock:
                    self.pending += records
                    self.assigned = consumer.assignment()
                    self.ever_assigned |= self.assigned
                if self.commit_each_poll:
                    self._commit(consumer)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            if consumer is not None:
                consumer.close()
            log.close()

    def start(self) -> Member:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive(), "consumer thread did not stop"
        assert not self.errors, self.errors


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


class EventLogContract:
    """Behaviour every ``EventLog`` backend must show."""

    @pytest.fixture
    def make_log(self) -> MakeLog:
        raise NotImplementedError("a backend's test class provides make_log")

    @pytest.fixture
    def log(self, make_log: MakeLog) -> EventLog:
        log = make_log()
        assert log.ensure_topic(3) == 3
        return log

    def test_ensure_topic_is_idempotent_and_keeps_the_partition_count(self, log: EventLog) -> None:
        assert log.ensure_topic(5) == 3
        assert sorted(log.end_offsets()) == [0, 1, 2]
        log.ping()

    def test_append_then_poll_round_trips_bytes_and_keeps_each_users_order(self, log: EventLog) -> None:
        sent = events(120)
        assert log.append(sent) == 120
        assert sum(log.end_offsets().values()) == 120
        with log.consumer(group("g-order")) as consumer:
            got = drain(consumer, 120)
        assert len(got) == 120
        by_seq = {seq(r): r for r in got}
        assert sorted(by_seq) == list(range(120))
        partition_of: dict[str, int] = {}
        last_seq: dict[str, int] = {}
        for r in sorted(got, key=lambda r: (r.partition, r.offset)):
            ev = parse_event(r.value)
            assert r.key == ev.user_id
            assert r.value == by_seq[seq(r)].value
            assert partition_of.setdefault(r.key, r.partition) == r.partition, "a user's events span partitions"
            assert seq(r) > last_seq.get(r.key, -1), f"user {r.key}'s events are out of order"
            last_seq[r.key] = seq(r)
        assert len(set(partition_of.values())) > 1, "12 users all landed on one partition"

    def test_raw_bytes_append_under_given_keys(self, log: EventLog) -> None:
        assert log.append([b"not json", b"{}"], keys=["k1", None]) == 2
        with log.consumer(group("g-raw")) as consumer:
            got = drain(consumer, 2)
        assert sorted((r.key or "", r.value) for r in got) == [("", b"{}"), ("k1", b"not json")]

    def test_committed_positions_survive_a_restart_and_nothing_is_redelivered(self, make_log: MakeLog) -> None:
        log = make_log()
        log.ensure_topic(3)
        log.append(events(30))
        with log.consumer(group("g-resume")) as first:
            got = drain(first, 30)
            assert len(got) == 30
            first.commit(next_positions(got))
            assert first.committed() == next_positions(got)
        log.append(events(5, start=30))
        restarted = make_log()
        with restarted.consumer(group("g-resume")) as second:
            again = drain(second, 5, timeout_s=WAIT_S)
        assert sorted(seq(r) for r in again) == [30, 31, 32, 33, 34]

    def test_uncommitted_records_are_delivered_again_after_a_restart(self, make_log: MakeLog) -> None:
        log = make_log()
        log.ensure_topic(3)
        log.append(events(40))
        with log.consumer(group("g-redeliver")) as first:
            got = drain(first, 40)
            halves = first_halves(got)  # as if the consumer died mid-batch
            first.commit(next_positions(halves))
        with make_log().consumer(group("g-redeliver")) as second:
            again = drain(second, 40 - len(halves))
        assert sorted(seq(r) for r in again) == sorted(set(range(40)) - {seq(r) for r in halves})

    def test_two_members_share_the_partitions_and_see_every_record_once(self, make_log: MakeLog) -> None:
        log = make_log()
        log.ensure_topic(3)
        a = Member(make_log, group("g-share")).start()
        wait_for(lambda: a.assigned == {0, 1, 2}, "the first member to own all 3 partitions")
        b = Member(make_log, group("g-share")).start()
        wait_for(
            lambda: (
                a.assigned and b.assigned and not (a.assigned & b.assigned) and (a.assigned | b.assigned) == {0, 1, 2}
            ),
            "the two members to split the partitions",
        )
        log.append(events(300, users=30))
        wait_for(lambda: len(a.done) + len(b.done) >= 300, "300 committed records")
        a.close()
        b.close()
        seen = [seq(r) for r in a.done + b.done]
        assert sorted(seen) == list(range(300)), "a record was lost or processed twice"
        assert a.done and b.done
        assert not {r.partition for r in a.done} & {r.partition for r in b.done}

    def test_on_revoke_commits_before_a_partition_moves(self, make_log: MakeLog) -> None:
        log = make_log()
        log.ensure_topic(3)
        log.append(events(90, users=30))
        a = Member(make_log, group("g-handover"), commit_each_poll=False).start()
        wait_for(lambda: {seq(r) for r in a.pending + a.done} == set(range(90)), "the first member to read all")
        b = Member(make_log, group("g-handover"), commit_each_poll=False).start()
        wait_for(lambda: b.assigned and not (a.assigned & b.assigned), "the second member to get partitions")
        time.sleep(1.0)  # b would now re-read a's uncommitted records, if a had not committed in on_revoke
        a.close()
        b.close()
        assert b.done == [], "records committed by the revoked member were delivered again"
        assert sorted(seq(r) for r in a.done) == list(range(90))

    def test_lag_counts_what_the_group_has_not_committed(self, log: EventLog) -> None:
        log.append(events(25))
        with log.consumer(group("g-lag")) as consumer:
            got = drain(consumer, 25)
            assert sum(consumer.lag().values()) == 25  # read but not committed
            first_ten = sorted(got, key=lambda r: (r.partition, r.offset))[:10]
            consumer.commit(next_positions(first_ten))
            lag = consumer.lag()
        assert set(lag) == {0, 1, 2}
        assert sum(lag.values()) == 15

    def test_seek_to_committed_rereads_what_was_not_committed(self, log: EventLog) -> None:
        log.append(events(10))
        with log.consumer(group("g-seek")) as consumer:
            got = drain(consumer, 10)
            consumer.commit(next_positions(got))
            log.append(events(4, start=10))
            more = drain(consumer, 4)
            consumer.seek_to_committed()
            again = drain(consumer, 4)
        assert sorted(seq(r) for r in more) == sorted(seq(r) for r in again) == [10, 11, 12, 13]

    def test_commit_of_a_partition_not_owned_is_refused(self, log: EventLog) -> None:
        log.append(events(3))
        with log.consumer(group("g-fence")) as consumer:
            drain(consumer, 3)
            with pytest.raises(CommitFailedError, match="g-fence"):
                consumer.commit({7: 1})

    def test_dead_letters_keep_the_reason_and_the_original_bytes(self, log: EventLog) -> None:
        assert log.read_dead_letters(10) == []
        log.dead_letter(b"\xff\xfenot json", "not JSON: invalid character", source=(2, 17))
        log.dead_letter(b'{"event_id": "e9"}', "missing field 'user_id'")
        letters = log.read_dead_letters(10)
        assert [(d.value, d.reason, d.source) for d in letters] == [
            (b"\xff\xfenot json", "not JSON: invalid character", (2, 17)),
            (b'{"event_id": "e9"}', "missing field 'user_id'", None),
        ]
        assert [d.reason for d in log.read_dead_letters(1)] == ["missing field 'user_id'"]

    def test_records_are_dead_lettered_once_per_position_even_from_another_process(self, make_log: MakeLog) -> None:
        log = make_log()
        log.ensure_topic(3)
        now = int(time.time() * 1000)
        bad = [Record(1, 4, "u1", b"{oops", now), Record(2, 9, None, b"[" * 50, now)]
        assert log.dead_letter_records([(bad[0], "not JSON"), (bad[1], "nested too deep")]) == 2
        assert log.dead_letter_records([(bad[0], "not JSON")]) == 0  # the same record delivered again
        restarted = make_log()  # a consumer restarted after dying before its commit knows nothing in memory
        later = Record(0, 3, "u2", b"{}", now)
        assert restarted.dead_letter_records([(bad[1], "nested too deep"), (later, "missing field")]) == 1
        letters = restarted.read_dead_letters(10)
        assert sorted((d.source, d.value) for d in letters) == [
            ((0, 3), b"{}"),
            ((1, 4), b"{oops"),
            ((2, 9), b"[" * 50),
        ]
        assert restarted.dead_letter_records([]) == 0
