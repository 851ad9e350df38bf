"""The consumer loop: poll a batch, validate, apply, write state in bulk, then commit.

Commit only after state is written: a crash between the two redelivers the batch, and the positions inside
each state make the replay a no-op (no event lost, none counted twice). A log or store that does not answer is
waited out, not fatal: the loop backs off (capped exponential, with jitter; ``speed.retry_*``), rewinds to the
committed positions so nothing polled but unwritten is skipped, and resumes by itself; ``health`` says what it
waits for. A bad record goes to the dead-letter
log with its reason and the loop carries on. The state for a batch is written and committed before the next
poll, so a rebalance (which happens inside poll) never finds unflushed state.

Example
-------
>>> with SpeedConsumer(settings) as consumer:          # doctest: +SKIP
...     stats = consumer.run(until_idle_s=2.0)
>>> stats.processed
10000
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from lambdarec.backoff import Backoff
from lambdarec.events import BadEvent, Event, EventRules
from lambdarec.log import EventLog, open_log
from lambdarec.log.base import CommitFailedError, EventLogError, Record, next_positions
from lambdarec.logs import get_logger
from lambdarec.model.freshstate import solve_many
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, StoreError, open_store
from lambdarec.store.base import UserRow, trending_key
from speed_layer import metrics
from speed_layer.health import SpeedHealth
from speed_layer.state import Position, apply_trending, apply_user_events

log = get_logger(__name__)
_LAG_EVERY_S = 5.0  # how often a long-running consumer refreshes its lag gauge


@dataclass
class SpeedStats:
    """Counts since the consumer started."""

    processed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    users: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, int]:
        return {
            "processed": self.processed,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "users": len(self.users),
            "items": len(self.items),
        }


class SpeedConsumer:
    """One member of the speed layer's consumer group."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: OnlineStore | None = None,
        log_: EventLog | None = None,
        group: str | None = None,
        observer: Callable[[list[Record], float], None] | None = None,
        health: SpeedHealth | None = None,
    ) -> None:
        """``observer(records, written_at)`` is called after each batch is written and committed (benchmarks)."""
        self.settings = settings
        self.health = health or SpeedHealth()
        speed = settings.speed
        self._backoff = Backoff(speed.retry_initial_s, speed.retry_max_s, speed.give_up_after_s)
        self._rewind = False  # after a failure: back to the committed positions before the next poll
        self._observer = observer
        self._own = (store is None, log_ is None)
        self.store = store or open_store(settings)
        self.log = log_ or open_log(settings)
        self.rules = EventRules.from_settings(settings)
        self.stats = SpeedStats()
        self.model: SnapshotModel | None = None
        self._rows: OrderedDict[str, UserRow | None] = OrderedDict()  # batch rows of the current snapshot (LRU)
        self._rows_version: str | None = None
        self._stopping = False  # a plain flag: stop() runs inside signal handlers, where locks can deadlock
        self.log.ensure_topic()
        self.consumer = self.log.consumer(
            group,
            on_assign=lambda p: log.info("speed.assigned", partitions=sorted(p)),
            on_revoke=lambda p: log.info("speed.revoked", partitions=sorted(p)),
        )

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand (write, commit) and return."""
        self._stopping = True

    def run(self, until_idle_s: float | None = None) -> SpeedStats:
        """Loop until ``stop()``, or until the log has been drained for ``until_idle_s`` seconds.

        Drained means the group has committed every partition to its end, not merely that this member polled
        nothing: partitions still held by a crashed member count as work until the group hands them over.
        """
        idle_since = lag_at = time.monotonic()
        while not self._stopping:
            try:
                busy = self.step() > 0
                if until_idle_s is None and time.monotonic() - lag_at >= _LAG_EVERY_S:
                    lag_at = time.monotonic()
                    self._drained()  # a long-running consumer refreshes its lag gauge (and notices a dead broker)
                drained = busy or until_idle_s is None or self._drained()
            except CommitFailedError as exc:  # a rebalance took the partitions: their new owner replays them
                log.info("speed.commit_refused", error=str(exc))
                self._rewind = True
                continue
            except (EventLogError, StoreError) as exc:
                self._wait_out(exc)
                idle_since = time.monotonic()
                continue
            self._backoff.reset()
            self.health.resumed()
            if busy or not drained:
                idle_since = time.monotonic()
            elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
                break
        return self.stats

    def _wait_out(self, exc: EventLogError | StoreError) -> None:
        """Record what failed, back off, and rewind before the next poll: nothing polled but unwritten is lost,
        and nothing is committed past what was written. Re-raises once ``speed.give_up_after_s`` has passed."""
        dependency = "store" if isinstance(exc, StoreError) else "log"
        self.health.waiting(dependency, f"{type(exc).__name__}: {exc}")
        if self._backoff.expired():
            log.error("speed.giving_up", waiting_for=dependency, after_s=self.settings.speed.give_up_after_s)
            raise exc
        self._rewind = True
        delay = self._backoff.sleep(lambda: self._stopping)
        log.info("speed.retrying", waiting_for=dependency, after_s=round(delay, 3), attempt=self._backoff.attempts)

    def _drained(self) -> bool:
        lag = self.consumer.lag()
        for partition, records in lag.items():
            metrics.LAG.labels(partition=str(partition)).set(records)
        return sum(lag.values()) == 0

    def step(self) -> int:
        """One poll-apply-write-commit cycle; returns how many records it handled."""
        speed = self.settings.speed
        if self._rewind:
            self.consumer.seek_to_committed()
            self._rewind = False
        records = self.consumer.poll(speed.poll_max_records, timeout_ms=speed.max_wait_ms)
        if not records:
            return 0
        self._refresh_model()
        good = self._validate(records)
        written_at = self._apply(good)
        self.consumer.commit(next_positions(records))
        self.stats.processed += len(good)
        self.stats.batches += 1
        metrics.EVENTS.inc(len(good))
        for event, _ in good:
            metrics.FRESHNESS.observe(max(written_at - event.timestamp, 0.0))
        for r in records:
            metrics.APPEND_TO_STATE.observe(max(written_at - r.timestamp_ms / 1000.0, 0.0))
        if self._observer is not None:
            self._observer(records, written_at)
        return len(records)

    def _history(self, model: SnapshotModel, user_ids: list[str]) -> dict[str, UserRow]:
        """Users' batch rows in ``model``'s snapshot. Published rows never change, so they are cached per
        version (absent users too) and only the misses are read from the store."""
        if self._rows_version != model.version:
            self._rows, self._rows_version = OrderedDict(), model.version
        missing = [u for u in user_ids if u not in self._rows]
        if missing:
            found = self.store.read_users(model.version, missing)
            for u in missing:
                self._rows[u] = found.get(u)
        out = {}
        for u in user_ids:
            self._rows.move_to_end(u)
            if (row := self._rows[u]) is not None:
                out[u] = row
        while len(self._rows) > self.settings.speed.history_cache_users:
            self._rows.popitem(last=False)
        return out

    def _refresh_model(self) -> None:
        version = self.store.current_version()
        if version is None or (self.model is not None and self.model.version == version):
            return
        self.model = SnapshotModel.load(self.store, version)
        metrics.SNAPSHOT.info({"version": version})
        log.info("speed.snapshot", version=version, cutoff_s=self.model.cutoff_s)

    def _validate(self, records: list[Record]) -> list[tuple[Event, Position]]:
        good = []
        for r in records:
            try:
                # "Too far in the future" is judged against when the record was appended: deterministic on replay.
                event = self.rules.parse(r.value, now=r.timestamp_ms / 1000.0)
            except BadEvent as exc:
                self.log.dead_letter(r.value, exc.reason, (r.partition, r.offset))
                self.stats.dead_lettered += 1
                metrics.DEAD_LETTERS.inc()
                continue
            good.append((event, (r.partition, r.offset)))
        return good

    def _apply(self, good: list[tuple[Event, Position]]) -> float:
        by_user: dict[str, list[tuple[Event, Position]]] = defaultdict(list)
        by_item: dict[str, list[tuple[Event, Position]]] = defaultdict(list)  # per (item, partition) shard
        for event, pos in good:
            by_user[event.user_id].append((event, pos))
            by_item[trending_key(event.item_id, pos[0])].append((event, pos))
        if not good:
            return time.time()
        model, speed = self.model, self.settings.speed
        states = self.store.read_fresh_users(by_user)
        history = self._history(model, list(by_user)) if model else {}
        weights = model.event_weights if model and model.event_weights else dict(self.settings.batch.event_weights)
        users = []
        for user_id, events in by_user.items():
            new = apply_user_events(
                states.get(user_id),
                events,
                model,
                history.get(user_id),
                settings=speed,
                default_weights=weights,
                solve_vector=False,
            )
            if new is not None:
                users.append(new)
        if model is not None:
            users = solve_many(users, model, [history.get(u.user_id) for u in users])
        trending = self.store.read_trending(by_item)
        items = []
        for item_id, events in by_item.items():
            new = apply_trending(trending.get(item_id), events, weights, speed.trending_half_life_s)
            if new is not None:
                items.append(new)
        self.store.write_fresh_users(users)
        self.store.write_trending(items)
        self.stats.users.update(by_user)
        self.stats.items.update(event.item_id for event, _ in good)
        return time.time()

    def close(self) -> None:
        """Leave the group and release what this consumer opened."""
        self.consumer.close()
        if self._own[1]:
            self.log.close()
        if self._own[0]:
            self.store.close()

    def __enter__(self) -> SpeedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
