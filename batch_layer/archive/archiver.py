"""The archiver loop: poll the log into a micro-batch, validate, append to the lake, then commit the group.

Exactly once: the lake commit records the log positions it covers (see :mod:`lambdarec.lake.delta`) and drops
rows the table already holds, so a restart after a SIGKILL at any instant, or a race between archivers of one
group, never writes a record twice; the group's committed offsets only save re-reading. A micro-batch closes
at ``archive.max_batch_events`` records or ``archive.max_batch_s`` seconds (or when the log is drained). Bad
records go to the lake's dead-letter table with their reason and original bytes; events of an erased user that
were in the log before the erasure are dropped.

With ``log.impressions_topic`` impressions have a log of their own, archived by an archiver of its own
(``impressions=True``, ``lambdarec archive run --impressions``) into the same table: its rows say ``source =
"impressions"`` and its commits record that log's positions apart (``Lake.positions(log="impressions")``), so
each log's events land exactly once. Any other event on the impressions log (written straight to that topic) goes
to the dead letters, as the impressions consumer never applies it: resent through ingest, it lands once.

A log or lake that does not answer (an ``EventLogError``; a ``LakeError`` or an ``OSError`` from the filesystem or
the object store) is waited out, not fatal (:mod:`lambdarec.pollloop`, ``archive.retry_*``): the archiver drops
what it polled but did not write, rewinds to the lake's positions, and resumes by itself; ``health`` says what it
waits for. Nothing is committed to the group past what the lake holds.

Example
-------
>>> with Archiver(settings) as archiver:          # doctest: +SKIP
...     stats = archiver.run(until_idle_s=2.0)
>>> stats.to_json()["positions"]
{'0': 1200, '1': 1187, '2': 1210}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batch_layer.archive import prometheus
from batch_layer.archive.health import ArchiveHealth
from lambdarec.catalog.events import with_changes
from lambdarec.eventlog import (
    NOT_AN_IMPRESSION,
    CommitFailedError,
    EventLog,
    EventLogError,
    Record,
    next_positions,
    open_impressions_log,
    open_log,
)
from lambdarec.events import IMPRESSION, BadEvent, Event, EventRules
from lambdarec.lake import Erasure, Lake, LakeError, dead_letter_rows, event_rows, open_lake
from lambdarec.lake.schema import SOURCE_IMPRESSIONS, SOURCE_LOG
from lambdarec.logs import get_logger
from lambdarec.pollloop import PollLoop
from lambdarec.settings import Settings

log = get_logger(__name__)
# What a down dependency raises: the log's errors, and the lake's (delta-rs reports I/O and object-store
# failures as OSError). Other delta-rs errors (protocol, schema) are bugs or bad settings and end the run.
RETRIED = (EventLogError, LakeError, OSError)


@dataclass
class ArchiveStats:
    """Counts since the archiver started, and where the lake stands."""

    archived: int = 0
    dead_lettered: int = 0
    erased: int = 0
    already_archived: int = 0
    commits: int = 0
    lake_version: int | None = None
    positions: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """``{"archived", "dead_lettered", "lake_version", "positions"}`` plus the other counts."""
        return {
            "archived": self.archived,
            "dead_lettered": self.dead_lettered,
            "erased": self.erased,
            "already_archived": self.already_archived,
            "commits": self.commits,
            "lake_version": self.lake_version,
            "positions": {str(p): n for p, n in sorted(self.positions.items())},
        }


class Archiver(PollLoop[ArchiveStats]):
    """One member of the archiver's consumer group."""

    name = "archive"
    retried = RETRIED

    def __init__(
        self,
        settings: Settings,
        *,
        event_log: EventLog | None = None,
        lake: Lake | None = None,
        group: str | None = None,
        on_commit: Callable[[int], None] | None = None,
        health: ArchiveHealth | None = None,
        impressions: bool = False,
    ) -> None:
        """``on_commit(lake_version)`` is called after each lake commit (tests and benchmarks); ``impressions``:
        archive the impressions log (``log.impressions_topic``), in group ``archive.consumer_group-impressions``."""
        super().__init__(health or ArchiveHealth(), settings.archive)
        if impressions and settings.log.impressions_topic is None:
            raise ValueError("archiving the impressions log needs log.impressions_topic (else they are in log.url's)")
        self.settings = settings
        self.source = SOURCE_IMPRESSIONS if impressions else SOURCE_LOG  # the log, as the lake names it
        self._own_log = event_log is None
        self.event_log = event_log or (open_impressions_log(settings) if impressions else open_log(settings))
        self.lake = lake or open_lake(settings)
        self.rules = with_changes(EventRules.from_settings(settings))  # catalog changes: the catalog's history
        self.stats = ArchiveStats()
        self._on_commit = on_commit
        self._pending: list[Record] = []
        self._erasures: dict[str, Erasure] = {}
        self.event_log.ensure_topic()
        self.consumer = self.event_log.consumer(
            group or settings.archive.consumer_group + ("-impressions" if impressions else ""),
            on_assign=lambda p: log.info("archive.assigned", partitions=sorted(p)),
            on_revoke=self._revoked,
        )

    @classmethod
    def dependency(cls, exc: BaseException) -> str:
        return "log" if isinstance(exc, EventLogError) else "lake"

    def _revoked(self, partitions: set[int]) -> None:
        # Records of a partition leaving us are dropped unarchived: its next owner reads them again from the
        # group's position, and the lake's positions stop anyone from archiving them twice.
        self._pending = [r for r in self._pending if r.partition not in partitions]
        log.info("archive.revoked", partitions=sorted(partitions))

    def cycle(self, draining: bool) -> int:
        return self.step(drain=draining)

    def result(self) -> ArchiveStats:
        """The counts, with the lake's positions and version as they stand now."""
        try:
            self.stats.positions = self.lake.positions(partitions=self.event_log.end_offsets(), log=self.source)
            self.stats.lake_version = self.lake.version()
            self.refresh_lag()
        except RETRIED as exc:  # stopped while a dependency is down: report the positions of the last commit
            log.warning("archive.final_positions_unknown", error=f"{type(exc).__name__}: {exc}")
        return self.stats

    def _rewind_to_lake(self) -> None:
        """Point the group, and this member's reads, at the lake's positions (what it holds, no further)."""
        assigned = self.consumer.assignment()
        done = self.lake.positions(partitions=assigned, log=self.source)
        held = {p: n for p, n in done.items() if p in assigned and n > 0}
        try:
            self.consumer.commit(held)
        except CommitFailedError as exc:  # a rebalance took the partitions: their new owner starts from the lake
            log.info("archive.group_commit_refused", reason=str(exc))
        self.consumer.seek_to_committed()
        log.info("archive.rewound", positions=held)

    def drained(self) -> bool:
        ends = self.event_log.end_offsets()
        done = self.lake.positions(partitions=ends, log=self.source)
        return all(done.get(p, 0) >= end for p, end in ends.items() if end > 0)

    def refresh_lag(self) -> None:
        ends = self.event_log.end_offsets()
        done = self.lake.positions(partitions=ends, log=self.source)
        for p, end in ends.items():
            prometheus.LAG.labels(partition=str(p)).set(max(end - done.get(p, 0), 0))
            prometheus.POSITION.labels(partition=str(p)).set(done.get(p, 0))

    def step(self, drain: bool = False) -> int:
        """Collect one micro-batch, archive it, commit the group; returns how many records it handled.

        With ``drain`` the batch also closes when a poll finds nothing new (``--until-idle``).
        """
        cfg = self.settings.archive
        if self._rewind:
            self._pending = []
            self._rewind_to_lake()
            self._rewind = False
        started = time.monotonic()
        while not self._stopping and len(self._pending) < cfg.max_batch_events:
            wait_ms = int(max(0.0, cfg.max_batch_s - (time.monotonic() - started)) * 1000)
            if wait_ms <= 0:
                break
            got = self.consumer.poll(
                min(cfg.poll_max_records, cfg.max_batch_events - len(self._pending)), timeout_ms=min(wait_ms, 200)
            )
            self._pending.extend(got)
            if not got and (drain or not self._pending):
                if not self._pending:
                    return 0
                break
        records, self._pending = self._pending, []
        if records:
            self._archive(records)
        return len(records)

    def _archive(self, records: list[Record]) -> None:
        covers = next_positions(records)
        erasures = self._current_erasures()
        good: list[tuple[Event, tuple[int, int]]] = []
        bad: list[tuple[bytes, str, tuple[int, int]]] = []
        erased = 0
        for r in records:
            try:
                event = self.rules.parse(r.value, now=r.timestamp_ms / 1000.0)
            except BadEvent as exc:
                bad.append((r.value, exc.reason, (r.partition, r.offset)))
                continue
            gone = erasures.get(event.user_id)  # erasure first: an erased user's bytes never reach dead letters
            if gone is not None and gone.covers(r.partition, r.offset, r.timestamp_ms / 1000, self._impressions):
                erased += 1
                continue
            if self._impressions and event.event_type != IMPRESSION:  # never applied: never archived as if it were
                bad.append((r.value, NOT_AN_IMPRESSION, (r.partition, r.offset)))
                continue
            good.append((event, (r.partition, r.offset)))
        now = time.time()
        t0 = time.perf_counter()
        if bad:
            dl = self.lake.dead_letter(dead_letter_rows(bad, source=self.source, ingested_at=now), covers, self.source)
            self.stats.dead_lettered += dl.appended
            prometheus.DEAD_LETTERS.inc(dl.appended)
        result = self.lake.append_log(event_rows(good, source=self.source, ingested_at=now), covers, self.source)
        prometheus.COMMIT_SECONDS.observe(time.perf_counter() - t0)
        self.stats.archived += result.appended
        self.stats.already_archived += result.skipped
        self.stats.erased += erased
        self.stats.commits += 1
        self.stats.lake_version = result.version
        self.stats.positions.update(result.positions)
        prometheus.ARCHIVED.inc(result.appended)
        prometheus.SKIPPED.inc(result.skipped)
        prometheus.ERASED.inc(erased)
        prometheus.COMMITS.inc()
        if result.version is not None:
            prometheus.LAKE_VERSION.set(result.version)
        log.info(
            "archive.committed",
            version=result.version,
            appended=result.appended,
            skipped=result.skipped,
            dead_letters=len(bad),
            erased=erased,
            positions=covers,
        )
        self._recheck_erasures(good, erasures)
        if self._on_commit is not None and result.version is not None:
            self._on_commit(result.version)
        try:  # only a hint for where to read next: the lake holds the truth
            self.consumer.commit(result.positions if result.positions else covers)
        except CommitFailedError as exc:
            log.info("archive.group_commit_refused", reason=str(exc))

    def _current_erasures(self) -> dict[str, Erasure]:
        self._erasures = self.lake.erasures()
        return self._erasures

    def _recheck_erasures(self, good: list[tuple[Event, tuple[int, int]]], before: dict[str, Erasure]) -> None:
        """Close the race with ``forget``: a user erased while this batch was being committed is deleted now.

        ``forget`` records the erasure and then deletes; this runs after the commit. Either it sees the
        erasure, or the erasure came after the commit and ``forget``'s own delete removes the rows.
        """
        after = self.lake.erasures()
        late = {
            e.user_id
            for e, pos in good
            if (gone := after.get(e.user_id)) is not None
            and gone is not before.get(e.user_id)
            and gone.covers(*pos, impressions=self._impressions)
        }
        if late:
            version, deleted = self.lake.delete_users(late)
            log.info("archive.erased_after_commit", users=len(late), rows=deleted, version=version)

    @property
    def _impressions(self) -> bool:
        return self.source == SOURCE_IMPRESSIONS

    def close(self) -> None:
        """Leave the group and release the log if this archiver opened it."""
        self.consumer.close()
        if self._own_log:
            self.event_log.close()
