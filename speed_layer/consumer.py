"""The consumer loop: poll a batch, validate, apply, write state in bulk, then commit.

Commit only after state is written: a crash between the two redelivers the batch, and the positions inside
each state make the replay a no-op (no event lost, none counted twice). A log or store that does not answer is
waited out, not fatal (:mod:`lambdarec.pollloop`, ``speed.retry_*``): the consumer rewinds to the committed
positions so nothing polled but unwritten is skipped, and resumes by itself; ``health`` says what it waits for.
A bad record goes to the dead-letter log with its reason and the loop carries on. The state for a batch is
written and committed before the next poll, so a rebalance (which happens inside poll) never finds unflushed
state. What a batch does to state is :mod:`speed_layer.apply`; what it reads is :mod:`speed_layer.rows`.

Example
-------
>>> with SpeedConsumer(settings) as consumer:          # doctest: +SKIP
...     stats = consumer.run(until_idle_s=2.0)
>>> stats.processed
10000
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from lambdarec.catalog.events import interactions, with_changes
from lambdarec.eventlog import EventLog, open_log
from lambdarec.eventlog.base import EventLogError, Record, next_positions
from lambdarec.events import BadEvent, Event, EventRules
from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser, TrendingItem
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.pollloop import PollLoop
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, StoreError, open_store
from speed_layer import prometheus
from speed_layer.apply import BatchInputs, compute_states, describe, group_events
from speed_layer.fresh_items import stale_users
from speed_layer.health import SpeedHealth
from speed_layer.impressions import PositivePath
from speed_layer.rows import BatchRows, read_fresh_states
from speed_layer.state import Position

log = get_logger(__name__)
_MODEL_EVERY_S = 1.0  # how often an idle consumer looks for a new current snapshot


class ConsumerHaltedError(RuntimeError):
    """Too many records in a row failed with an unexpected error: a bug to fix, not bad events to dead-letter."""


@dataclass
class SpeedStats:
    """Counts since the consumer started: plain counters, so memory does not grow with users or events.

    ``users`` and ``items`` count state rows written (a user or trending shard once per batch it appears in).
    """

    processed: int = 0  # events applied
    dead_lettered: int = 0  # bad events and poison records sent to the dead-letter log
    batches: int = 0
    users: int = 0
    items: int = 0
    duplicates: int = 0  # events skipped because their event_id was applied already
    failed: int = 0  # poison records: valid events whose application raised (dead-lettered too)

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class SpeedConsumer(PollLoop[SpeedStats]):
    """One member of the speed layer's consumer group."""

    name = "speed"
    retried = (EventLogError, StoreError)

    def __init__(
        self,
        settings: Settings,
        *,
        store: OnlineStore | None = None,
        event_log: EventLog | None = None,
        group: str | None = None,
        observer: Callable[[list[Record], float], None] | None = None,
        health: SpeedHealth | None = None,
    ) -> None:
        """``observer(records, written_at)`` is called after each batch is written and committed (benchmarks)."""
        super().__init__(health or SpeedHealth(), settings.speed)
        self.settings = settings
        self._observer = observer
        self._own = (store is None, event_log is None)
        self.store = store or open_store(settings)
        self.event_log = event_log or open_log(settings)
        self.rules = with_changes(EventRules.from_settings(settings))  # catalog changes are read, then skipped
        self.stats = SpeedStats()
        self.model: SnapshotModel | None = None
        self._rows = BatchRows(self.store, settings.speed.history_cache_users)  # of the current snapshot (LRU)
        self._failure_streak = 0  # records in a row whose application raised (events.max_consecutive_failures)
        self._bad_positions: set[Position] = set()
        self._model_at = time.monotonic()
        self._path = PositivePath(settings.speed)  # all records, or all but impressions (own consumer)
        self.event_log.ensure_topic()
        self.consumer = self.event_log.consumer(
            group,
            on_assign=lambda p: log.info("speed.assigned", partitions=sorted(p)),
            on_revoke=lambda p: log.info("speed.revoked", partitions=sorted(p)),
        )

    @classmethod
    def dependency(cls, exc: BaseException) -> str:
        return "store" if isinstance(exc, StoreError) else "log"

    def result(self) -> SpeedStats:
        return self.stats

    def cycle(self, draining: bool) -> int:
        return self.step()

    def idle(self) -> None:
        if time.monotonic() - self._model_at >= _MODEL_EVERY_S:
            self._refresh_idle()
            self._model_at = time.monotonic()

    def _refresh_idle(self) -> None:
        """An idle consumer follows flips too, so its snapshot gauge is current and the first event after a flip
        does not wait for the load. A store error here is left for the next batch to meet."""
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
        """One poll-apply-write-commit cycle; returns how many records it handled.

        Each record is isolated: one that cannot be decoded (a bad event) or whose application raises (a poison
        record) is dead-lettered once with the reason and the others are applied. A repeated ``event_id`` is
        skipped. When ``events.max_consecutive_failures`` records in a row fail with an unexpected error the
        consumer raises ``ConsumerHaltedError`` before dead-lettering or committing them: that is a bug, and the
        log must wait for its fix rather than go to the dead-letter log whole.
        """
        speed = self.settings.speed
        if self._rewind:
            self.consumer.seek_to_committed()
            self._rewind = False
        records = self.consumer.poll(self._path.size, timeout_ms=speed.max_wait_ms)
        if not records:
            return 0
        self._refresh_model()
        good, bad = self._validate(mine := self._path.of(records))
        good = interactions(good)
        good, repeats = self._first_claims(good)
        users, items, poison = self._compute(good, {(r.partition, r.offset): r.timestamp_ms / 1000.0 for r in mine})
        self._check_failure_streak(mine, poison, repeats)
        if poison and self.settings.events.dedup_window_s > 0:  # a corrected resend under the same id may apply
            self.store.release_event_ids({event.event_id: pos for event, pos in good if pos in poison})
        self._write(users, items)
        written_at = time.time()
        by_pos = {(r.partition, r.offset): r for r in mine}
        letters = [*bad, *((by_pos[pos], reason) for pos, reason in poison.items())]
        if letters:
            self.event_log.dead_letter_records(letters)
        self.consumer.commit(next_positions(records))
        applied = [(event, pos) for event, pos in good if pos not in poison]
        self._count(mine, applied, bad, poison, repeats, len(users), len(items), written_at)
        if self._observer is not None:
            self._observer(records, written_at)
        return len(records)

    def _write(self, users: list, items: list[TrendingItem]) -> None:
        self.store.write_fresh_users(users)
        self.store.write_trending(items)

    def _count(
        self,
        records: list[Record],
        applied: list[tuple[Event, Position]],
        bad: list[tuple[Record, str]],
        poison: dict[Position, str],
        repeats: set[Position],
        users: int,
        items: int,
        written_at: float,
    ) -> None:
        st = self.stats
        st.processed += len(applied)
        st.dead_lettered += len(bad) + len(poison)
        st.failed += len(poison)
        st.duplicates += len(repeats)
        st.batches += 1
        st.users += users
        st.items += items
        prometheus.EVENTS.inc(len(applied))
        prometheus.DEAD_LETTERS.inc(len(bad) + len(poison))
        prometheus.POISON.inc(len(poison))
        prometheus.DUPLICATES.inc(len(repeats))
        for event, _ in applied:
            prometheus.FRESHNESS.observe(max(written_at - event.timestamp, 0.0))
        for r in records:
            prometheus.APPEND_TO_STATE.observe(max(written_at - r.timestamp_ms / 1000.0, 0.0))

    def _first_claims(self, good: list[tuple[Event, Position]]) -> tuple[list[tuple[Event, Position]], set[Position]]:
        """``good`` less repeats: events whose ``event_id`` a record at another log position carried first
        within ``events.dedup_window_s``. The claims live in the store, so restarts and other consumers agree."""
        window = self.settings.events.dedup_window_s
        if window <= 0 or not good:
            return good, set()
        first: dict[str, Position] = {}
        for event, pos in good:
            first.setdefault(event.event_id, pos)
        owners = self.store.claim_event_ids(first, window)
        kept = [(event, pos) for event, pos in good if owners.get(event.event_id) == pos]
        repeats = {pos for event, pos in good if owners.get(event.event_id) != pos}
        if repeats:
            log.info("speed.repeated_event_ids", skipped=len(repeats))
        return kept, repeats

    def _check_failure_streak(self, records: list[Record], poison: dict[Position, str], repeats: set[Position]) -> None:
        """Raise ``ConsumerHaltedError`` once ``events.max_consecutive_failures`` records in a row failed with an
        unexpected error (bad events neither break nor extend the streak: they are the producer's fault)."""
        limit = self.settings.events.max_consecutive_failures
        streak = self._failure_streak
        for r in records:
            pos = (r.partition, r.offset)
            if pos in poison:
                streak += 1
                if streak >= limit:
                    raise ConsumerHaltedError(
                        f"{streak} records in a row failed with an unexpected error (events.max_consecutive_failures "
                        f"= {limit}); the last, at partition {pos[0]} offset {pos[1]}: {poison[pos]}. This looks like "
                        "a bug rather than bad events: nothing of this batch was dead-lettered or committed, so the "
                        "records will be applied once the consumer is fixed and restarted"
                    )
            elif pos in repeats or pos not in self._bad_positions:
                streak = 0
        self._failure_streak = streak

    def _refresh_model(self) -> None:
        version = self.store.current_version()
        if version is None or (self.model is not None and self.model.version == version):
            return
        self.model = SnapshotModel.load(self.store, version)
        prometheus.SNAPSHOT.info({"version": version})
        log.info("speed.snapshot", version=version, cutoff_s=self.model.cutoff_s)

    def _validate(self, records: list[Record]) -> tuple[list[tuple[Event, Position]], list[tuple[Record, str]]]:
        """Decode every record: (good events with their positions, bad records with the reason)."""
        good, bad = [], []
        self._bad_positions = set()
        for r in records:
            try:
                # "Too far in the future" is judged against when the record was appended: deterministic on replay.
                event = self.rules.parse(r.value, now=r.timestamp_ms / 1000.0)
            except BadEvent as exc:
                bad.append((r, exc.reason))
                self._bad_positions.add((r.partition, r.offset))
                continue
            except MemoryError:
                raise
            except Exception as exc:  # a decoder bug must not stop the consumer: isolate the record
                bad.append((r, f"could not be decoded: {describe(exc)}"))
                self._bad_positions.add((r.partition, r.offset))
                log.exception("speed.decode_failed", partition=r.partition, offset=r.offset)
                continue
            good.append((event, (r.partition, r.offset)))
        return good, bad

    def _compute(
        self, good: list[tuple[Event, Position]], appended: dict[Position, float]
    ) -> tuple[list[FreshUser], list[TrendingItem], dict[Position, str]]:
        """The new user states and trending shards for ``good``, and the poison records left out with the reason.
        ``appended`` maps a position to its record's append time (epoch s). The store is read once."""
        if not good:
            return [], [], {}
        by_user, by_item = group_events(good)
        model = self.model
        trending = self.store.read_trending(by_item)
        users = list(by_user) + [u for u in stale_users(trending.values(), model) if u not in by_user]  # re-solved
        inputs = BatchInputs(
            model=model,
            states=read_fresh_states(self.store, users),
            history=self._rows.get(model, users) if model else {},
            trending=trending,
            weights=model.event_weights if model and model.event_weights else dict(self.settings.batch.event_weights),
            speed=self.settings.speed,
            appended=appended,
        )
        return compute_states(by_user, by_item, inputs)

    def close(self) -> None:
        """Leave the group and release what this consumer opened."""
        self.consumer.close()
        if self._own[1]:
            self.event_log.close()
        if self._own[0]:
            self.store.close()
