"""Users' fresh states kept in memory between requests while the store lists no change to them (Cassandra).

A request used to read its user's fresh state from the store every time, so that a fresh event shows in the next
list: on Cassandra that read costs the serving process and the node far more than the rest of an answer from the
answer cache. Every write of fresh state is also listed as a change (:mod:`lambdarec.store.changes`). This keeps
each state read (or each user read as having none) and polls the list every ``serving.fresh_changes_poll_ms``:
a user the list names is dropped and read again on their next request. So a request reads the store only for
users whose state changed since it was read, and a new state shows within one poll of its being written.

What keeps it right:

* Kept states are used only while the polls are current (the last one that answered was sent within
  ``STALE_POLLS`` poll intervals or a second, whichever is longer: under load the event loop sees an answer
  late, and kept states must not stop just when they help most): while the list cannot be read every request
  reads the store, as before; a poll after a gap reads every change since the last one that answered (within
  the list's hour; past it, every kept state is dropped).
* A state read while a change was applied is not kept (the read may have been answered before that write), nor
  one read within ``serving.fresh_state_active_s`` of a change to that user being applied: a user acting now is
  read on every request, so each new event of theirs shows in their next list with no poll in between (and a
  read at ``LOCAL_ONE`` that reached the replica a quorum write did not wait for is never kept).
* Each poll reads again the changes of the last ``serving.fresh_changes_overlap_s`` and skips those seen by
  their stamp, so a change that lands late (a slow write, two writers' clocks a little apart) is still seen.
* A state is kept ``serving.fresh_state_keep_s`` at most (less up to half of it at random, so that states kept
  together are not all read again together; a change missed all the same, e.g. one written by a
  release that does not list changes, is read within that), within ``serving.fresh_state_keep_mb`` per worker
  (each state counted at :func:`state_bytes`; the least recently used go first). An erasure in this process
  drops its user at once.

Example
-------
>>> kept = KeptStates(64 << 20, 30.0, 0.05, 2.0)
>>> hits, to_read, epoch = kept.take(["u1", "u2"])    # before the first poll: nothing kept, all read
>>> kept.keep(to_read, {"u1": state}, epoch)           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser
from lambdarec.store.changes import CHANGES_TTL_S, FreshChange

log = get_logger(__name__)

STALE_POLLS = 4  # kept states are used while the last answered poll was sent at most this many intervals ago
STALE_MIN_S = 1.0  # ... or this long ago, if longer: a loaded event loop sees answers late
_ABSENT = None  # a user read as having no fresh state
ENTRY_BYTES = 250  # a kept entry: the map's slot, its tuple, the user id
KEEP_JITTER = 0.5  # a state is kept 50-100% of serving.fresh_state_keep_s (as the answer cache spreads its TTL)


def state_bytes(state: FreshUser | None) -> int:
    """About what keeping ``state`` holds in memory: its decoded objects (a float object per vector factor, a
    tuple per event, recent item, position and seen event id, a dict entry per hidden, disliked or shown item)
    and what ranking derives from it while it lives (its float32 vector, the indices of its items), plus the
    entry."""
    if state is None:
        return ENTRY_BYTES
    return (
        ENTRY_BYTES + 600
        + 36 * len(state.vector or ())
        + 160 * len(state.events) + 120 * len(state.recent) + 100 * len(state.event_positions)
        + 120 * (len(state.hidden) + len(state.disliked) + len(state.positions)) + 160 * len(state.shown)
        + 136 * len(state.seen_ids)  # measured: a tuple of two ints and its slot
    )  # fmt: skip


class KeptStates:
    """One event loop's kept fresh states and the poll of the store's change list (one per worker)."""

    def __init__(
        self, max_bytes: int, max_age_s: float, poll_s: float, overlap_s: float, active_s: float = 5.0
    ) -> None:
        self.max_bytes, self.max_age_s, self.poll_s, self.overlap_s = max_bytes, max_age_s, poll_s, overlap_s
        self.active_s = active_s  # a user changed this recently is read on every request
        self.stale_s = max(STALE_POLLS * poll_s, STALE_MIN_S)
        self.bytes = 0
        self._kept: OrderedDict[str, tuple[FreshUser | None, float, int]] = OrderedDict()  # (state, expires, size)
        self.epoch = 0  # bumped whenever changes are applied: a read begun before is not kept
        self._answered: float | None = None  # monotonic time of the last poll that answered
        self._after_s: float | None = None  # the next poll reads changes stamped after this (the writers' clock)
        self._seen: dict[uuid.UUID, float] = {}  # stamps of the changes applied, within the overlap window
        self._settling: dict[str, float] = {}  # users changed lately -> monotonic time their reads may be kept
        self._pruned_at = 0.0
        self._counts: dict[str, Counter] = {}

    # ---- requests ---------------------------------------------------------------------------------------------

    def live(self, now: float | None = None) -> bool:
        """Whether kept states may be used: the change list was read lately."""
        answered = self._answered
        return answered is not None and (now if now is not None else time.monotonic()) - answered <= self.stale_s

    def take(self, user_ids: Sequence[str]) -> tuple[dict[str, FreshUser], list[str], int | None]:
        """(the kept states of ``user_ids``, the users to read from the store, the epoch to pass to :meth:`keep`
        or None: not live, keep nothing). A user kept as having no state is neither in the first nor read."""
        now = time.monotonic()
        if not self.live(now):
            return {}, list(user_ids), None
        hits: dict[str, FreshUser] = {}
        to_read: list[str] = []
        kept = self._kept
        for user_id in user_ids:
            entry = kept.get(user_id)
            if entry is None or now >= entry[1]:
                to_read.append(user_id)
                continue
            kept.move_to_end(user_id)
            if entry[0] is not _ABSENT:
                hits[user_id] = entry[0]
        self._count("hit", len(user_ids) - len(to_read))
        self._count("miss", len(to_read))
        return hits, to_read, self.epoch

    def keep(self, user_ids: Iterable[str], states: Mapping[str, FreshUser], epoch: int | None) -> None:
        """Keep what a read of ``user_ids`` gave (``states``; a user left out has none), unless a change was
        applied since it began (``epoch``, from :meth:`take`) or the polls are not current."""
        if epoch is None or epoch != self.epoch or self.max_bytes <= 0 or not self.live():
            return
        now, kept, settling = time.monotonic(), self._kept, self._settling
        for user_id in user_ids:
            if settling and settling.get(user_id, 0.0) > now:
                continue
            state = states.get(user_id, _ABSENT)
            self._drop(user_id)
            size = state_bytes(state)
            # each kept a little less than the longest keep: states kept together are not all read again together
            expires = now + self.max_age_s * (1.0 - KEEP_JITTER * random.random())  # noqa: S311 (not secret)
            kept[user_id] = (state, expires, size)
            self.bytes += size
        while self.bytes > self.max_bytes and kept:
            self._drop(next(iter(kept)))

    def _drop(self, user_id: str) -> bool:
        entry = self._kept.pop(user_id, None)
        if entry is None:
            return False
        self.bytes -= entry[2]
        return True

    def forget(self, user_id: str) -> None:
        """Drop ``user_id``'s kept state (an erasure in this process)."""
        self._drop(user_id)
        self.epoch += 1

    def __len__(self) -> int:
        return len(self._kept)

    # ---- the change list --------------------------------------------------------------------------------------

    def apply(self, changes: Sequence[FreshChange], polled_at_s: float) -> int:
        """Drop the users the changes not seen before name; ``polled_at_s``: the wall time the poll was sent.
        Returns how many kept states were dropped."""
        dropped = 0
        fresh = [c for c in changes if c.at not in self._seen]
        now = time.monotonic()
        if fresh:
            self.epoch += 1
        if now >= self._pruned_at + self.active_s:  # users no longer active, once per active_s (not per poll)
            self._settling = {u: until for u, until in self._settling.items() if until > now}
            self._pruned_at = now
        until = now + self.active_s
        for change in fresh:
            self._seen[change.at] = change.at_s
            if change.user_ids is None:  # a row that did not decode: whoever it named, nothing kept holds
                dropped += len(self._kept)
                self.clear()
                continue
            for user_id in change.user_ids:
                dropped += self._drop(user_id)
                self._settling[user_id] = until
        horizon = polled_at_s - self.overlap_s
        self._after_s = horizon
        if len(self._seen) > 64:
            self._seen = {at: at_s for at, at_s in self._seen.items() if at_s > horizon - 1.0}
        self._count("dropped", dropped)
        return dropped

    def after_s(self, now_s: float) -> float:
        """The stamp after which the next poll reads: the overlap window before the last answered poll was sent
        (before the first one: before now). Past the list's TTL every kept state is dropped (changes since may
        be gone) and the window starts again."""
        after = self._after_s
        if after is None or now_s - after > CHANGES_TTL_S / 2:
            if after is not None:
                self.clear()
            after = now_s - self.overlap_s
        return after

    def clear(self) -> None:
        self._kept.clear()
        self.bytes = 0
        self.epoch += 1

    async def watch(self, read: Callable[[float], Awaitable[list[FreshChange]]], timeout_s: float) -> None:
        """Poll the change list every ``poll_s`` through ``read(after_s)`` (a store read without blocking),
        each poll waiting ``timeout_s`` at most; a poll that fails is logged once per outage and tried again."""
        failing = False
        while True:
            sent_s, sent = time.time(), time.monotonic()
            try:
                async with asyncio.timeout(timeout_s):  # not wait_for: on 3.11 it can swallow a cancellation
                    changes = await read(self.after_s(sent_s))
            except Exception as exc:  # the store is down or slow: every request reads it (or is degraded)
                if not failing:
                    log.warning("serving.fresh_changes_unread", reason=f"{type(exc).__name__}: {exc}",
                                effect="every request reads its user's fresh state until the list answers")  # fmt: skip
                failing = True
            else:
                self.apply(changes, sent_s)
                self._answered = sent  # the poll's send time: a change written before it is applied by now
                if failing:
                    log.info("serving.fresh_changes_read", effect="fresh states kept again until they change")
                failing = False
            await asyncio.sleep(max(0.0, self.poll_s - (time.monotonic() - sent)))

    # ---- metrics ------------------------------------------------------------------------------------------------

    def register(self, registry: CollectorRegistry) -> None:
        """``lambdarec_serving_kept_fresh_total{result=hit|miss|dropped}``, ``..._kept_fresh_users`` and
        ``..._kept_fresh_live``."""
        total = Counter(
            "lambdarec_serving_kept_fresh_total",
            "Users' fresh states taken from memory (hit) or read from the store (miss) by requests, and kept "
            "states dropped because the store listed a change (dropped).",
            ["result"],
            registry=registry,
        )
        self._counts = {result: total.labels(result) for result in ("hit", "miss", "dropped")}
        Gauge("lambdarec_serving_kept_fresh_users", "Users whose fresh state this worker keeps.",
              registry=registry).set_function(lambda: float(len(self._kept)))  # fmt: skip
        Gauge("lambdarec_serving_kept_fresh_bytes",
              "About what this worker's kept fresh states hold in memory (serving.fresh_state_keep_mb).",
              registry=registry).set_function(lambda: float(self.bytes))  # fmt: skip
        Gauge("lambdarec_serving_kept_fresh_live",
              "1 while the store's change list is read in time and kept fresh states are used, else 0.",
              registry=registry).set_function(lambda: float(self.live()))  # fmt: skip

    def _count(self, result: str, n: int) -> None:
        if n and (counter := self._counts.get(result)) is not None:
            counter.inc(n)
