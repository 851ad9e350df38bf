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
from dataclasses import asdict, dataclass

from lambdarec.backoff import Backoff
from lambdarec.eventlog import EventLog, open_log
from lambdarec.eventlog.base import CommitFailedError, EventLogError, Record, next_positions
from lambdarec.events import BadEvent, Event, EventRules
from lambdarec.logs import get_logger
from lambdarec.model.freshstate import solve_many
from lambdarec.model.rows import FreshUser, TrendingItem, UserRow, trending_key
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import CorruptRowError, OnlineStore, StoreError, open_store
from lambdarec.store.codec import check_user_indices
from speed_layer import metrics
from speed_layer.health import SpeedHealth
from speed_layer.state import Position, apply_trending, apply_user_events

log = get_logger(__name__)
_LAG_EVERY_S = 5.0  # how often a long-running consumer refreshes its lag gauge
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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def _isolated(apply, key: str, events: list, found: dict) -> object:
    """``apply(key, events)``; when it raises, apply the events one at a time and record each one that raises in
    ``found`` (position -> reason), so one poison record never holds back the others."""
    if not events:
        return None
    try:
        return apply(key, events)
    except MemoryError:
        raise
    except Exception:
        kept: list = []
        for event, pos in events:
            try:
                apply(key, [*kept, (event, pos)])
            except MemoryError:
                raise
            except Exception as exc:
                found[pos] = f"could not be applied: {_describe(exc)}"
                continue
            kept.append((event, pos))
        return apply(key, kept) if kept else None


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
        self._failure_streak = 0  # records in a row whose application raised (events.max_consecutive_failures)
        self._bad_positions: set[Position] = set()
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
        idle_since = lag_at = model_at = time.monotonic()
        while not self._stopping:
            try:
                busy = self.step() > 0
                if not busy and time.monotonic() - model_at >= _MODEL_EVERY_S:
                    self._refresh_idle()
                    model_at = time.monotonic()
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

    def _refresh_idle(self) -> None:
        """An idle consumer follows flips too, so its snapshot gauge is current and the first event after a flip
        does not wait for the load. A store error here is left for the next batch to meet."""
        try:
            self._refresh_model()
        except StoreError as exc:
            log.warning("speed.idle_refresh_failed", reason=str(exc))

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
        records = self.consumer.poll(speed.poll_max_records, timeout_ms=speed.max_wait_ms)
        if not records:
            return 0
        self._refresh_model()
        good, bad = self._validate(records)
        good, repeats = self._first_claims(good)
        users, items, poison = self._compute(good, {(r.partition, r.offset): r.timestamp_ms / 1000.0 for r in records})
        self._check_failure_streak(records, poison, repeats)
        if poison and self.settings.events.dedup_window_s > 0:  # a corrected resend under the same id may apply
            self.store.release_event_ids({event.event_id: pos for event, pos in good if pos in poison})
        self.store.write_fresh_users(users)
        self.store.write_trending(items)
        written_at = time.time()
        by_pos = {(r.partition, r.offset): r for r in records}
        letters = [*bad, *((by_pos[pos], reason) for pos, reason in poison.items())]
        if letters:
            self.log.dead_letter_records(letters)
        self.consumer.commit(next_positions(records))
        applied = [(event, pos) for event, pos in good if pos not in poison]
        self._count(records, applied, bad, poison, repeats, len(users), len(items), written_at)
        if self._observer is not None:
            self._observer(records, written_at)
        return len(records)

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
        metrics.EVENTS.inc(len(applied))
        metrics.DEAD_LETTERS.inc(len(bad) + len(poison))
        metrics.POISON.inc(len(poison))
        metrics.DUPLICATES.inc(len(repeats))
        for event, _ in applied:
            metrics.FRESHNESS.observe(max(written_at - event.timestamp, 0.0))
        for r in records:
            metrics.APPEND_TO_STATE.observe(max(written_at - r.timestamp_ms / 1000.0, 0.0))

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

    def _history(self, model: SnapshotModel, user_ids: list[str]) -> dict[str, UserRow]:
        """Users' batch rows in ``model``'s snapshot. Published rows never change, so they are cached per
        version (absent users too) and only the misses are read from the store."""
        if self._rows_version != model.version:
            self._rows, self._rows_version = OrderedDict(), model.version
        missing = [u for u in user_ids if u not in self._rows]
        if missing:
            found = self._read_rows(model, missing)
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

    def _fresh_states(self, user_ids: list[str]) -> dict[str, FreshUser]:
        """The users' fresh state; a state that does not decode is started afresh (logged), never a crash loop."""
        try:
            return self.store.read_fresh_users(user_ids)
        except CorruptRowError as exc:
            log.error("speed.corrupt_fresh_state", users=[str(k) for k in exc.keys][:20], reason=str(exc),
                      effect="their fresh state restarts from the events being applied")  # fmt: skip
            return dict(exc.rows)

    def _read_rows(self, model: SnapshotModel, user_ids: list[str]) -> dict[str, UserRow]:
        """The users' batch rows; a row that fails its checksum or names unknown items is left out (that user is
        folded in from fresh events alone), so one corrupt row never stops the consumer."""
        try:
            found = self.store.read_users(model.version, user_ids)
        except CorruptRowError as exc:
            found, bad = dict(exc.rows), {str(k): str(exc) for k in exc.keys}
        else:
            bad = {}
        for user_id, row in list(found.items()):
            try:
                check_user_indices(row, len(model.item_ids))
            except CorruptRowError as exc:
                del found[user_id]
                bad[user_id] = str(exc)
        if bad:
            log.warning("speed.corrupt_rows", snapshot=model.version, users=sorted(bad)[:20], count=len(bad),
                        reason=next(iter(bad.values())), effect="folded in without their batch history")  # fmt: skip
        return found

    def _refresh_model(self) -> None:
        version = self.store.current_version()
        if version is None or (self.model is not None and self.model.version == version):
            return
        self.model = SnapshotModel.load(self.store, version)
        metrics.SNAPSHOT.info({"version": version})
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
                bad.append((r, f"could not be decoded: {_describe(exc)}"))
                self._bad_positions.add((r.partition, r.offset))
                log.exception("speed.decode_failed", partition=r.partition, offset=r.offset)
                continue
            good.append((event, (r.partition, r.offset)))
        return good, bad

    def _compute(
        self, good: list[tuple[Event, Position]], appended: dict[Position, float] | None = None
    ) -> tuple[list[FreshUser], list[TrendingItem], dict[Position, str]]:
        """The new user states and trending shards for ``good``, and the poison records left out with the reason.
        ``appended`` maps a position to its record's append time (epoch s), which each state row keeps for its
        newest event.

        The store is read once; the pure state functions run again without the records that raised, until none
        does (each round drops at least one, so this ends).
        """
        appended = appended or {}
        by_user: dict[str, list[tuple[Event, Position]]] = defaultdict(list)
        by_item: dict[str, list[tuple[Event, Position]]] = defaultdict(list)  # per (item, partition) shard
        for event, pos in good:
            by_user[event.user_id].append((event, pos))
            by_item[trending_key(event.item_id, pos[0])].append((event, pos))
        if not good:
            return [], [], {}
        model = self.model
        states = self._fresh_states(list(by_user))
        history = self._history(model, list(by_user)) if model else {}
        trending = self.store.read_trending(by_item)
        weights = model.event_weights if model and model.event_weights else dict(self.settings.batch.event_weights)
        poison: dict[Position, str] = {}
        while True:
            found: dict[Position, str] = {}
            users = self._user_states(by_user, states, history, weights, poison, found, appended)
            items = self._trending_shards(by_item, trending, weights, poison, found, appended)
            if not found:
                break
            for pos, reason in found.items():
                log.error("speed.poison_record", partition=pos[0], offset=pos[1], reason=reason)
            poison.update(found)
        return users, items, poison

    def _user_states(self, by_user, states, history, weights, skip, found, appended) -> list[FreshUser]:
        model, speed = self.model, self.settings.speed

        def apply(user_id: str, events: list[tuple[Event, Position]]) -> FreshUser | None:
            return apply_user_events(
                states.get(user_id), events, model, history.get(user_id), settings=speed,
                default_weights=weights, solve_vector=False,
                appended_at=max((appended.get(pos, 0.0) for _, pos in events), default=0.0),
            )  # fmt: skip

        users = []
        for user_id, events in by_user.items():
            live = [(e, p) for e, p in events if p not in skip]
            new = _isolated(apply, user_id, live, found)
            if new is not None:
                users.append(new)
        if model is None or not users:
            return users
        try:
            return solve_many(users, model, [history.get(u.user_id) for u in users])
        except MemoryError:
            raise
        except Exception:  # one user's data breaks the batched solve: find whose, alone
            solved = []
            for user in users:
                try:
                    solved.extend(solve_many([user], model, [history.get(user.user_id)]))
                except MemoryError:
                    raise
                except Exception as exc:
                    for _, pos in by_user[user.user_id]:
                        if pos not in skip:
                            found[pos] = f"could not be applied (fold-in of user {user.user_id!r}): {_describe(exc)}"
            return solved

    def _trending_shards(self, by_item, trending, weights, skip, found, appended) -> list[TrendingItem]:
        half_life = self.settings.speed.trending_half_life_s

        def apply(key: str, events: list[tuple[Event, Position]]) -> TrendingItem | None:
            newest = max((appended.get(pos, 0.0) for _, pos in events), default=0.0)
            return apply_trending(trending.get(key), events, weights, half_life, newest)

        items = []
        for key, events in by_item.items():
            live = [(e, p) for e, p in events if p not in skip and p not in found]
            new = _isolated(apply, key, live, found)
            if new is not None:
                items.append(new)
        return items

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
