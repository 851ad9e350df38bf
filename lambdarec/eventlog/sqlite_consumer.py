"""A consumer-group member on the embedded SQLite log.

Group semantics, kept simple and close to Kafka's:

- A member joins on its first ``poll`` and stays while it polls or commits at least every
  ``log.session_timeout_ms``; a silent member is dropped by the next member that polls, and its partitions are
  freed.
- Partitions are dealt round-robin over the live members sorted by member id: partition ``p`` belongs to member
  ``p % n``. A partition moves only when its owner lets it go: the owner, at its next poll, calls ``on_revoke``
  (flush and commit there) and releases it; only then can the new owner claim it, and it starts from the
  group's committed position. So two members never read a partition at once, and a member never waits longer
  than the owner's poll interval.
- ``commit`` checks, in the same transaction, that this member still owns each partition, so a member that was
  dropped while stalled cannot overwrite the new owner's positions (``CommitFailedError``). Such a member learns
  at its next poll: ``on_revoke`` is called for the lost partitions, and a ``commit`` there fails the same way.
- New groups start at position 0 (Kafka's ``auto_offset_reset='earliest'``).
"""

from __future__ import annotations

import itertools
import sqlite3
import time
import uuid
from collections.abc import Mapping

from lambdarec.eventlog.base import CommitFailedError, Consumer, PartitionCallback, Record
from lambdarec.eventlog.sqlite_db import EventDatabase, now_ms
from lambdarec.logs import get_logger
from lambdarec.sqlite_txn import write_txn

SELECT_RECORDS = "SELECT pos, key, value, appended_ms FROM records WHERE part = ? AND pos >= ? ORDER BY pos LIMIT ?"
UPSERT_MEMBER = (
    "INSERT INTO group_members (grp, member, heartbeat_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (grp, member) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms"
)
UPSERT_POSITION = (
    "INSERT INTO group_positions (grp, part, next_pos) VALUES (?, ?, ?) "
    "ON CONFLICT (grp, part) DO UPDATE SET next_pos = excluded.next_pos"
)
DROP_EXPIRED = "DELETE FROM group_members WHERE grp = ? AND heartbeat_ms < ?"
FREE_ORPHANS = (
    "DELETE FROM group_owners WHERE grp = ? AND member NOT IN (SELECT member FROM group_members WHERE grp = ?)"
)
OWNED = "SELECT part FROM group_owners WHERE grp = ? AND member = ?"

log = get_logger(__name__)


class SQLiteConsumer(Consumer):
    """One member of ``group`` on a SQLite event log; see the module docstring for the group semantics."""

    def __init__(
        self,
        event_log: EventDatabase,
        group: str,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ):
        self.group = group
        self.member = uuid.uuid4().hex
        self._event_log = event_log
        self._conn: sqlite3.Connection = event_log.connect()
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._positions: dict[int, int] = {}  # assigned partition -> next position to read
        self._lost = False  # inside on_revoke for partitions taken away while we were silent
        self._turn = itertools.count()
        self._closed = False

    # ---- group membership -----------------------------------------------------------------------------------

    def _revoke(self, partitions: set[int], *, lost: bool) -> None:
        self._lost = lost
        try:
            if partitions and self._on_revoke is not None:
                self._on_revoke(set(partitions))
        finally:
            self._lost = False
            for p in partitions:
                self._positions.pop(p, None)

    def _sync_group(self) -> None:
        """Heartbeat, drop silent members, let go of partitions that are no longer ours, claim the free ones."""
        n = self._event_log.partition_count()
        now = now_ms()
        with write_txn(self._conn) as conn:
            conn.execute(UPSERT_MEMBER, (self.group, self.member, now))
            conn.execute(DROP_EXPIRED, (self.group, now - self._event_log.settings.session_timeout_ms))
            conn.execute(FREE_ORPHANS, (self.group, self.group))
            members = [
                m
                for (m,) in conn.execute(
                    "SELECT member FROM group_members WHERE grp = ? ORDER BY member", (self.group,)
                )
            ]
            owned = {p for (p,) in conn.execute(OWNED, (self.group, self.member))}
        lost = set(self._positions) - owned
        if lost:
            log.warning("log.partitions_lost", group=self.group, member=self.member, partitions=sorted(lost))
            self._revoke(lost, lost=True)
        mine = members.index(self.member)
        desired = {p for p in range(n) if p % len(members) == mine}
        release = owned - desired
        if release:
            self._revoke(release, lost=False)
            with write_txn(self._conn) as conn:
                conn.executemany(
                    "DELETE FROM group_owners WHERE grp = ? AND part = ? AND member = ?",
                    [(self.group, p, self.member) for p in release],
                )
        if desired - owned:
            with write_txn(self._conn) as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO group_owners (grp, part, member) VALUES (?, ?, ?)",
                    [(self.group, p, self.member) for p in desired - owned],
                )
                owned = {p for (p,) in conn.execute(OWNED, (self.group, self.member))}
        added = (owned - release) - set(self._positions)
        if added:
            committed = self.committed()
            for p in added:
                self._positions[p] = committed.get(p, 0)
            log.info("log.partitions_assigned", group=self.group, member=self.member, partitions=sorted(added))
            if self._on_assign is not None:
                self._on_assign(set(added))

    # ---- reading --------------------------------------------------------------------------------------------

    def _fetch(self, max_records: int) -> list[Record]:
        parts = sorted(self._positions)
        if not parts:
            return []
        start = next(self._turn) % len(parts)  # rotate so one busy partition cannot starve the others
        out: list[Record] = []
        for p in parts[start:] + parts[:start]:
            room = max_records - len(out)
            if room <= 0:
                break
            rows = self._conn.execute(SELECT_RECORDS, (p, self._positions[p], room)).fetchall()
            out.extend(Record(p, pos, key, bytes(value), ts) for pos, key, value, ts in rows)
            if rows:
                self._positions[p] = rows[-1][0] + 1
        return out

    def poll(self, max_records: int = 1000, timeout_ms: int = 100) -> list[Record]:
        if self._closed:
            raise RuntimeError(f"consumer of group {self.group!r} is closed")
        deadline = time.monotonic() + timeout_ms / 1000
        idle_s = self._event_log.settings.sqlite.idle_poll_ms / 1000
        while True:
            self._sync_group()
            records = self._fetch(max_records)
            left = deadline - time.monotonic()
            if records or left <= 0:
                return records
            time.sleep(min(idle_s, left))

    # ---- positions ------------------------------------------------------------------------------------------

    def commit(self, positions: Mapping[int, int]) -> None:
        if not positions:
            return
        bad = {p: o for p, o in positions.items() if not isinstance(o, int) or o < 0}
        if bad:
            raise ValueError(f"positions must be non-negative ints; got {bad}")
        if self._lost:
            raise CommitFailedError(
                f"group {self.group!r}: partitions {sorted(positions)} were lost (this member was silent longer "
                "than log.session_timeout_ms); their records will be delivered again to their new owner"
            )
        with write_txn(self._conn) as conn:
            owned = {p for (p,) in conn.execute(OWNED, (self.group, self.member))}
            stray = set(positions) - owned
            if stray:
                raise CommitFailedError(
                    f"group {self.group!r}: partitions {sorted(stray)} are no longer assigned to this consumer; "
                    "their records will be delivered again to their new owner"
                )
            conn.executemany(UPSERT_POSITION, [(self.group, p, o) for p, o in positions.items()])
            conn.execute(UPSERT_MEMBER, (self.group, self.member, now_ms()))

    def committed(self) -> dict[int, int]:
        rows = self._conn.execute("SELECT part, next_pos FROM group_positions WHERE grp = ?", (self.group,))
        return dict(rows.fetchall())

    def assignment(self) -> set[int]:
        return set(self._positions)

    def lag(self) -> dict[int, int]:
        committed = self.committed()
        return {p: end - committed.get(p, 0) for p, end in self._event_log.end_offsets().items()}

    def seek_to_committed(self) -> None:
        committed = self.committed()
        for p in self._positions:
            self._positions[p] = committed.get(p, 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._revoke(set(self._positions), lost=False)
        finally:
            with write_txn(self._conn) as conn:
                conn.execute("DELETE FROM group_owners WHERE grp = ? AND member = ?", (self.group, self.member))
                conn.execute("DELETE FROM group_members WHERE grp = ? AND member = ?", (self.group, self.member))
            self._conn.close()
