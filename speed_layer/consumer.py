"""The consumer loop: poll a batch, validate, apply, write state in bulk, then commit.

Commit only after state is written: a crash between the two redelivers the batch, and the positions inside each
state make the replay a no-op (no event lost, none counted twice). A log or store that does not answer is waited
out, not fatal (:mod:`lambdarec.pollloop`, ``speed.retry_*``): the consumer rewinds to the committed positions so
nothing polled but unwritten is skipped, and resumes by itself; ``health`` says what it waits for. A bad record
goes to the dead-letter log with its reason and the loop carries on. On a remote store a running consumer writes a
batch's state on the writer's thread as the next batch is polled and computed (:mod:`speed_layer.pipeline`), and a
rebalance (inside poll) first writes and commits it, and a batch's event-id claims overlap its state reads and its
computation (computed again for the rare batch with a repeat); on an embedded store each batch is written and
committed before the next poll, its ids claimed before its state is read (repeats cost no reads). See
:mod:`speed_layer.apply`.

Example
-------
>>> with SpeedConsumer(settings) as consumer:          # doctest: +SKIP
...     stats = consumer.run(until_idle_s=2.0)
>>> stats.processed                                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from lambdarec.catalog.events import interactions, with_changes
from lambdarec.eventlog import CommitFailedError, EventLog, open_log
from lambdarec.eventlog.base import EventLogError, Record
from lambdarec.events import Event, EventRules
from lambdarec.logs import get_logger
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.pollloop import PollLoop
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, StoreError, open_store
from speed_layer import claims, prometheus, seen
from speed_layer.apply import BatchInputs, compute_states, group_events
from speed_layer.decode import decode
from speed_layer.failures import ConsumerHaltedError, FailureStreak
from speed_layer.fresh_items import stale_users
from speed_layer.health import SpeedHealth
from speed_layer.impressions import PositivePath
from speed_layer.pipeline import Batch, StateWriter
from speed_layer.rows import BatchRows, FreshReads
from speed_layer.runtime import raise_gc_threshold, restore_gc_threshold
from speed_layer.state import Position
from speed_layer.stats import SpeedStats, count_batch

__all__ = ["ConsumerHaltedError", "SpeedConsumer"]

log = get_logger(__name__)
_MODEL_EVERY_S = 1.0  # how often an idle consumer looks for a new current snapshot


class SpeedConsumer(PollLoop[SpeedStats]):
    """One member of the speed layer's consumer group."""

    name = "speed"
    retried = (EventLogError, StoreError)
    state_writer = StateWriter  # what writes a batch's state (the impressions consumer writes other rows)

    def __init__(
        self,
        settings: Settings,
        *,
        store: OnlineStore | None = None,
        event_log: EventLog | None = None,
        group: str | None = None,
        observer: Callable[[list[Record], float], None] | None = None,
        health: SpeedHealth | None = None,
        on_batch: Callable[[Batch], None] | None = None,
    ) -> None:
        """``observer(records, written_at)`` is called after each batch is written and committed (benchmarks), and
        ``on_batch(batch)`` with the whole batch and its stage times."""
        super().__init__(health or SpeedHealth(), settings.speed)
        self._gc_before = raise_gc_threshold(settings.speed.gc_young_threshold)  # restored on close
        self.settings = settings
        self._observer = observer
        self._on_batch = on_batch
        self._own = (store is None, event_log is None)
        self.store = store or open_store(settings)
        self.event_log = event_log or self.open_log(settings)
        self.rules = with_changes(EventRules.from_settings(settings))  # catalog changes are read, then skipped
        self.stats = SpeedStats()
        self.model: SnapshotModel | None = None
        # a remote store's writes (and claims) overlap the next poll; an embedded store's run inline (GIL-bound)
        self._writer = self.state_writer(self.store, threaded=not self.store.embedded)
        self._io = ThreadPoolExecutor(max_workers=3, thread_name_prefix="speed-io")  # a remote store's claims, reads
        self._rows = BatchRows(self.store, settings.speed.history_cache_users)  # of the current snapshot (LRU)
        self._fresh = FreshReads(self.store, self._writer)  # state and trending, through the writer's pending
        self._failures = FailureStreak(settings.events.max_consecutive_failures)
        self._state_dedup_from: float | None = None  # events.dedup = "auto": read from the store at the first poll
        self._model_at = time.monotonic()
        self._path = PositivePath(settings.speed, settings.log)  # all records, or all but impressions
        self.event_log.ensure_topic()
        self.consumer = self.event_log.consumer(
            group,
            on_assign=lambda p: log.info("speed.assigned", partitions=sorted(p)),
            on_revoke=self._on_revoke,
        )

    @staticmethod
    def open_log(settings: Settings) -> EventLog:
        """The log this consumer reads: ``log.url``'s."""
        return open_log(settings)

    @classmethod
    def dependency(cls, exc: BaseException) -> str:
        return "store" if isinstance(exc, StoreError) else "log"

    def result(self) -> SpeedStats:
        return self.stats

    def idle(self) -> None:
        if time.monotonic() - self._model_at >= _MODEL_EVERY_S:
            self._refresh_idle()
            self._model_at = time.monotonic()

    def _refresh_idle(self) -> None:
        """An idle consumer follows flips too (a current snapshot gauge; no load before the next event's state)."""
        try:
            self._refresh_model()
        except StoreError as exc:
            log.warning("speed.idle_refresh_failed", reason=str(exc))

    def drained(self) -> bool:
        lag = self.consumer.lag()
        for partition, records in lag.items():
            prometheus.LAG.labels(partition=str(partition)).set(records)
        return sum(lag.values()) == 0

    def step(self) -> int:
        """One poll-apply-write-commit cycle, start to end; returns how many records it handled. Each record is
        isolated: one that cannot be decoded (a bad event) or whose application raises (a poison record) is
        dead-lettered once with the reason and the others are applied. A repeated ``event_id`` is skipped. When
        ``events.max_consecutive_failures`` records in a row fail with an unexpected error the consumer raises
        ``ConsumerHaltedError`` before dead-lettering or committing them: that is a bug, and the log must wait for
        its fix rather than go to the dead-letter log whole."""
        self.settle()
        records = self._poll()
        if records:
            self._writer.submit(self._prepare(records, time.time()))
            self._finish()
        return len(records)

    def cycle(self, draining: bool) -> int:
        """:meth:`step` pipelined: poll and compute the next batch while the previous one's state is written, then
        commit that one and hand this one on (polling nothing commits what is in flight); embedded: :meth:`step`."""
        if self.store.embedded:
            return self.step()
        records = self._poll()
        if not records:
            self._finish()
            return 0
        batch = self._prepare(records, time.time())
        self._finish()
        self._writer.submit(batch)
        return len(records)

    def settle(self) -> None:
        self._finish()

    def _poll(self) -> list[Record]:
        speed = self.settings.speed
        if self._rewind:
            self._writer.abandon()  # nothing in flight is committed: the rewind redelivers it
            self.consumer.seek_to_committed()
            self._rewind = False
        return self.consumer.poll(self._path.size, timeout_ms=speed.max_wait_ms)

    def _prepare(self, records: list[Record], polled_at: float) -> Batch:
        """Validate, claim event ids, read state and compute what ``records`` do to it (nothing written);
        ``polled_at``: when the poll returned them (epoch s)."""
        self._refresh_model()
        mine = self._path.of(records)  # those this consumer applies; the others are committed past untouched
        batch = Batch(mine, polled=records, polled_at=polled_at)
        good, batch.bad = self._decode(mine)
        good, refused = self._applicable(good, mine)
        batch.bad.extend(refused)
        appended = {(r.partition, r.offset): r.timestamp_ms / 1000.0 for r in mine}
        computed = None
        if self._dedup_in_state:  # repeats found in the states read: no claim request (speed_layer.seen)
            inputs = self._inputs(good, appended) if good else None
            batch.good, batch.repeats = self._state_repeats(good, inputs)
        elif self.store.embedded:  # claims first: repeats (resends) read nothing
            batch.good, batch.repeats = self._first_claims(good)
            inputs = self._inputs(batch.good, appended) if batch.good else None
        else:
            # the event-id claims (conditional batches: the slowest requests of a poll) overlap the reads and the
            # computation, which takes every event as applicable; the rare poll with a repeat is computed again
            claimed = self._io.submit(self._first_claims, good)
            try:
                inputs = self._inputs(good, appended) if good else None
                computed = self._compute(good, inputs) if inputs is not None else None
            finally:
                batch.good, batch.repeats = claimed.result()
        if batch.good and inputs is not None:
            fresh = computed is None or batch.repeats
            batch.users, batch.items, batch.poison = self._compute(batch.good, inputs) if fresh else computed
        self._failures.check(mine, batch.poison, batch.repeats, {(r.partition, r.offset) for r, _ in batch.bad})
        if batch.poison and self.settings.events.dedup_window_s > 0:  # a corrected resend under the same id
            claimed = [(e, pos) for e, pos in batch.good if pos in batch.poison]
            claims.release(self.store, [c for c in claimed if not (self._dedup_in_state and seen.in_state(c[0]))])
        batch.computed_at = time.time()
        return batch

    def _finish(self) -> None:
        """Wait for the batch in flight to be written, dead-letter its bad records, commit, count."""
        done = self._writer.wait()
        if done is None:
            return
        batch, written_at = done
        if letters := batch.letters:
            self.event_log.dead_letter_records(letters)
        self.consumer.commit(batch.positions)
        batch.written_at, batch.committed_at = written_at, time.time()
        count_batch(self.stats, batch, written_at)
        if self._observer is not None:
            self._observer(batch.polled or batch.records, written_at)
        if self._on_batch is not None:
            self._on_batch(batch)

    def _on_revoke(self, partitions: set[int]) -> None:
        """Before partitions go to another member: the state in flight is written and its positions committed
        (a failure leaves them to be redelivered to the new owner, and this member rewinds)."""
        log.info("speed.revoked", partitions=sorted(partitions))
        try:
            self.settle()
        except CommitFailedError as exc:
            log.info("speed.commit_refused", error=str(exc))
        except self.retried as exc:
            log.warning("speed.settle_failed", reason=str(exc), effect="the batch is delivered again")
            self._rewind = True

    def _decode(self, records: list[Record]) -> tuple[list[tuple[Event, Position]], list[tuple[Record, str]]]:
        return decode(self.rules, records)  # the good events with their positions, the bad records with the reason

    def _applicable(self, good: list[tuple[Event, Position]], records: list[Record]) -> tuple[list, list]:
        """The decoded events this consumer applies, and the records it refuses with the reason (none: catalog
        changes were decoded, a bad one dead-lettered, and are skipped here)."""
        return interactions(good), []

    def _first_claims(self, good: list[tuple[Event, Position]]) -> tuple[list[tuple[Event, Position]], set[Position]]:
        """``good`` less repeats (:func:`speed_layer.claims.first_claims`)."""
        return claims.first_claims(self.store, good, self.settings.events.dedup_window_s)

    @property
    def _dedup_in_state(self) -> bool:
        """Whether this poll's repeats are looked up in the users' states (``events.dedup``)."""
        events = self.settings.events
        if events.dedup == "store" or events.dedup_window_s <= 0:
            return False
        if events.dedup == "state":
            return True
        if self._state_dedup_from is None:  # read once: the store notes it for good
            self._state_dedup_from = self.store.state_dedup_from(events.dedup_window_s)
            log.info("speed.dedup", mode="auto", state_from=self._state_dedup_from,
                     claims_until_then=self._state_dedup_from > time.time())  # fmt: skip
        return time.time() >= self._state_dedup_from

    def _state_repeats(
        self, good: list[tuple[Event, Position]], inputs: BatchInputs | None
    ) -> tuple[list[tuple[Event, Position]], set[Position]]:
        """``good`` less repeats with ``events.dedup = "state"``: the users' own ids in their states, impressions
        by the store's claims (:mod:`speed_layer.seen`)."""
        repeats = seen.repeated(good, inputs.states) if inputs is not None else set()
        if repeats:
            log.info("speed.repeated_event_ids", skipped=len(repeats), found_in="state")
        if stored := [(e, pos) for e, pos in good if not seen.in_state(e) and pos not in repeats]:
            _, claimed = self._first_claims(stored)
            repeats |= claimed
        return [(e, pos) for e, pos in good if pos not in repeats], repeats

    def _refresh_model(self) -> None:
        version = self.store.current_version()
        if version is None or (self.model is not None and self.model.version == version):
            return
        self.model = SnapshotModel.load(self.store, version)
        prometheus.SNAPSHOT.info({"version": version})
        log.info("speed.snapshot", version=version, cutoff_s=self.model.cutoff_s)

    def _inputs(self, good: list[tuple[Event, Position]], appended: dict[Position, float]) -> BatchInputs:
        """What the store holds for ``good``'s users and trending shards (read once; from a remote store, the
        three reads at once); ``appended`` maps a position to its record's append time (epoch s)."""
        by_user, by_item = group_events(good)
        model, users, remote = self.model, list(by_user), not self.store.embedded
        trending_f = self._io.submit(self._fresh.trending, list(by_item)) if remote else None
        history_f = self._io.submit(self._rows.get, model, users) if remote and model else None
        try:
            states = self._fresh.users(users)
            trending = trending_f.result() if trending_f else self._fresh.trending(list(by_item))
            history = history_f.result() if history_f else self._rows.get(model, users) if model else {}
        finally:  # a failed read leaves none running into the retry (the snapshot-row cache is not thread-safe)
            wait([f for f in (trending_f, history_f) if f is not None])
        if stale := [u for u in stale_users(trending.values(), model) if u not in by_user]:  # re-solved
            states.update(self._fresh.users(stale))
            history.update(self._rows.get(model, stale) if model else {})
        return BatchInputs(
            model=model,
            states=states,
            history=history,
            trending=trending,
            weights=model.event_weights if model and model.event_weights else dict(self.settings.batch.event_weights),
            speed=self.settings.speed,
            appended=appended,
            seen=(events.dedup_window_s, events.dedup_ids_per_user)
            if (events := self.settings.events).dedup_window_s
            else None,
        )

    def _compute(self, good: list[tuple[Event, Position]], inputs: Any) -> tuple[list, list, dict[Position, str]]:
        """The users' new states, the trending shards, and the poison records left out with the reason."""
        return compute_states(*group_events(good), inputs)

    def close(self) -> None:
        """Write and commit the batch in flight, then leave the group and release what this consumer opened."""
        try:
            self.settle()
        except (CommitFailedError, *self.retried) as exc:
            log.warning("speed.settle_failed", reason=str(exc), effect="the batch is delivered again")
        finally:
            restore_gc_threshold(self._gc_before)
            self._writer.close()
            self._io.shutdown(wait=True)
        self.consumer.close()
        if self._own[1]:
            self.event_log.close()
        if self._own[0]:
            self.store.close()
