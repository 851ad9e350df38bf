"""The impressions consumer (``speed.feedback.own_consumer``): a consumer group of its own that applies only
``impression`` events, into each user's impressions row (:meth:`OnlineStore.write_shown`), so impressions never
sit in front of positive events. It reads the log of ``log.impressions_topic``, where ingest sends them, so the
positive-event consumer never reads one; unset, it reads the positive-event consumer's log, which skips them.

The loop is the speed consumer's (poll, validate, claim event ids, write, then commit; a crash redelivers and the
row's log positions make the replay a no-op), less what impressions never need: no snapshot, no fold-in, no
trending. A bad impression is dead-lettered here (the positive-event consumer leaves it alone). On the impressions
log (``log.impressions_topic``) a record that is not an impression is dead-lettered too, with the reason (a
producer wrote it straight there; nothing applies or archives it, so a resend through ingest lands once); on the
shared log it is the positive-event consumer's, committed past untouched.

Example
-------
>>> with ImpressionConsumer(settings) as consumer:          # doctest: +SKIP
...     stats = consumer.run(until_idle_s=2.0)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from lambdarec.eventlog import EventLog, Record, open_impressions_log
from lambdarec.events.impressions import ImpressionDecoder
from lambdarec.logs import get_logger
from lambdarec.model.rows import ShownItems
from lambdarec.settings import Settings
from lambdarec.store import CorruptRowError
from speed_layer.apply import Events, isolated
from speed_layer.consumer import SpeedConsumer
from speed_layer.decode import decode
from speed_layer.impressions import ImpressionPath, apply_impressions
from speed_layer.pipeline import Batch, StateWriter
from speed_layer.runtime import collector_paused
from speed_layer.state import Position

log = get_logger(__name__)


def lower_priority(settings: Settings) -> int | None:
    """Raise this process's niceness by ``speed.feedback.impressions_nice`` (the impressions consumer's process,
    at start), so that on shared cores the positive-event path runs first; the niceness it now has, or None when
    it was left alone (0, a platform without ``os.nice``, or refused: a warning, and the consumer runs on)."""
    by = settings.speed.feedback.impressions_nice
    if by == 0 or not hasattr(os, "nice"):
        return None
    try:
        return os.nice(by)
    except OSError as exc:
        log.warning("speed.impressions_nice_refused", by=by, reason=str(exc), effect="runs at its current priority")
        return None


def impressions_group(settings: Settings) -> str:
    """The group: ``speed.feedback.impressions_group``, else the speed consumer's group + ``-impressions``."""
    given = settings.speed.feedback.impressions_group
    return given or f"{settings.log.consumer_group}-impressions"


class ShownWriter(StateWriter):
    """Writes one batch's impressions rows (its ``users``; it has no trending shards)."""

    def _jobs(self, batch: Batch) -> list[tuple[Callable[[list[Any]], int], list[Any]]]:
        return [(self.store.write_shown, batch.users)]


class ImpressionConsumer(SpeedConsumer):
    """One member of the impressions consumer group: the speed consumer's loop (pipelined on a remote store) with
    its own records, state and writes (``_path``, ``_inputs``, ``_compute``, ``state_writer``)."""

    name = "impressions"
    state_writer = ShownWriter

    def __init__(self, settings: Settings, *, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(settings, group=group or impressions_group(settings), **kwargs)
        self._path = ImpressionPath(settings.speed, settings.log)
        self._decoder = ImpressionDecoder(self.rules)
        self._revoked: set[int] = set()  # partitions revoked while a batch is being polled (see _poll)

    @staticmethod
    def open_log(settings: Settings) -> EventLog:
        """The log impressions are read from: ``log.impressions_topic``'s when set, else ``log.url``'s."""
        return open_impressions_log(settings)

    def _refresh_model(self) -> None:
        """Impressions need no snapshot."""

    def _poll(self) -> list[Record]:
        """A poll, then more for ``speed.feedback.impressions_linger_ms`` after its first record, up to
        ``impressions_poll_records``: fuller batches, fewer row reads and writes per impression. A rebalance in a
        later poll drops what was held of the partitions revoked (their new owner reads them from the committed
        positions: nothing is applied by two members)."""
        records = super()._poll()
        linger_s = self.settings.speed.feedback.impressions_linger_ms / 1e3
        if not records or linger_s <= 0:
            return records
        deadline, self._revoked = time.monotonic() + linger_s, set()
        while len(records) < self._path.size and (left := deadline - time.monotonic()) > 0:
            more = self.consumer.poll(self._path.size - len(records), timeout_ms=max(1, int(left * 1e3)))
            if self._revoked:
                records = [r for r in records if r.partition not in self._revoked]
                self._revoked = set()
            records.extend(more)
        return records

    def _on_revoke(self, partitions: set[int]) -> None:
        self._revoked |= partitions
        super()._on_revoke(partitions)

    def step(self) -> int:
        with collector_paused():
            return super().step()

    def cycle(self, draining: bool) -> int:
        with collector_paused():
            return super().cycle(draining)

    def _decode(self, records: list[Record]) -> tuple[Events, list[tuple[Record, str]]]:
        """One pass over the poll (:class:`ImpressionDecoder`: impressions typed with what this path needs, any
        other record parsed whole); a decoder bug falls back to the record-by-record decode, which isolates it."""
        try:
            events, reasons = self._decoder.decode([r.value for r in records], [r.timestamp_ms / 1e3 for r in records])
        except Exception:  # each record then meets the error on its own, and is dead-lettered with it
            log.exception("speed.impressions_decode_failed", records=len(records))
            return decode(self.rules, records)
        good: Events = []
        bad: list[tuple[Record, str]] = []
        for record, event, reason in zip(records, events, reasons, strict=True):
            if reason is None:
                good.append((event, (record.partition, record.offset)))
            else:
                bad.append((record, reason))
        return good, bad

    def _applicable(self, good: Events, records: list[Record]) -> tuple[list, list]:
        """Impressions only: on their own log any other event is refused (dead-lettered with the reason), but
        silently where its user's erasure covers it (their rows read first: no erased data in the dead letters)."""
        strays = self._path.strays(good)
        return self._path.applicable(good, records, self._shown_rows(strays) if strays else None)

    @property
    def _dedup_in_state(self) -> bool:
        return False  # impressions keep their claims in the store whatever `events.dedup` (speed_layer.seen)

    def _first_claims(self, good: Events) -> tuple[Events, set[Position]]:
        """The speed consumer's claims (impressions' scope: apart from the positive-event consumer's); on an
        embedded store in transactions of at most ``speed.feedback.impressions_claims_per_txn`` ids, so the file's
        write lock is never held for a whole poll's. An id repeated in a later transaction finds the earlier
        one's claim."""
        most = self.settings.speed.feedback.impressions_claims_per_txn
        if not self.store.embedded or len(good) <= most:
            return super()._first_claims(good)
        kept: Events = []
        repeats: set[Position] = set()
        for start in range(0, len(good), most):
            first, again = super()._first_claims(good[start : start + most])
            kept.extend(first)
            repeats |= again
        return kept, repeats

    def _inputs(self, good: Events, appended: dict[Position, float]) -> dict[str, ShownItems]:
        return self._shown_rows({event.user_id for event, _ in good})

    def _shown_rows(self, users: set[str]) -> dict[str, ShownItems]:
        """The users' impressions rows: those being written, else the store's."""
        pending = self._writer.pending_users()
        try:
            stored = self.store.read_shown([u for u in users if u not in pending])
        except CorruptRowError as exc:  # a row that does not decode starts afresh, never a crash loop
            log.error("speed.corrupt_impressions_row", users=[str(k) for k in exc.keys][:20], reason=str(exc),
                      effect="their impressions restart from the events being applied")  # fmt: skip
            stored = dict(exc.rows)
        stored.update((u, pending[u]) for u in users if u in pending)  # type: ignore[misc]
        return stored

    def _compute(self, good: Events, inputs: Any) -> tuple[list, list, dict[Position, str]]:
        """The users' new impressions rows, no trending shard, and the poison records left out with the reason.
        ``good`` is what the claims left (on a remote store the rows were read beside the claims, for more)."""
        by_user: dict[str, Events] = {}
        for event, pos in good:  # one pass, by user alone: impressions have no trending shard
            if (mine := by_user.get(event.user_id)) is None:
                by_user[event.user_id] = [(event, pos)]
            else:
                mine.append((event, pos))
        limits = self.settings.speed.feedback
        poison: dict[Position, str] = {}
        rows: list[ShownItems] = []
        for user_id, events in by_user.items():
            row = isolated(lambda u, ev: apply_impressions(inputs.get(u), ev, limits), user_id, events, poison)
            if row is not None:
                rows.append(row)
        return rows, [], poison
