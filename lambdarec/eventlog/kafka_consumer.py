"""A Kafka consumer-group member behind the ``Consumer`` port.

``enable_auto_commit=False``: positions move only when the caller commits. New groups start at the earliest
offset. Kafka's default (eager) rebalance protocol revokes *all* of a member's partitions at every rebalance and
then assigns the new set, so ``on_revoke`` receives every partition the member had.

kafka-python 3 runs rebalance listeners on its network thread, where a blocking ``commit`` is refused. So while
``on_revoke`` runs, ``commit`` only records the positions; when the callback returns, they are committed
asynchronously on that thread and awaited before the rebalance goes on, which keeps Kafka's guarantee that
a partition's positions are saved before its next owner reads it. Partitions *lost* (this member was evicted)
cannot be committed: ``on_revoke`` is called for them too, and a ``commit`` there raises ``CommitFailedError``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Literal

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError as KafkaCommitFailedError,
)
from kafka.errors import (
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from lambdarec.eventlog.base import CommitFailedError, Consumer, EventLogError, PartitionCallback, Record
from lambdarec.eventlog.kafka_client import UNREACHABLE, client_config, kafka_target, unavailable
from lambdarec.logs import get_logger
from lambdarec.settings import LogSettings

_FENCED = (KafkaCommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError)

log = get_logger(__name__)


class _Listener(AsyncConsumerRebalanceListener):
    def __init__(self, owner: KafkaGroupConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        await self.owner._on_revoked(revoked, mode="revoke")

    async def on_partitions_lost(self, lost):  # type: ignore[no-untyped-def]
        await self.owner._on_revoked(lost, mode="lost")

    async def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        self.owner._on_assigned(assigned)


class KafkaGroupConsumer(Consumer):
    """One member of ``group`` reading the topic of ``settings.url``."""

    def __init__(
        self,
        settings: LogSettings,
        group: str,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ):
        self.group = group
        self._settings = settings
        _, self._topic = kafka_target(settings.url)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._in_callback: Literal["revoke", "lost"] | None = None
        self._pending: dict[int, int] = {}
        self._revoked: set[int] = set()  # partitions revoked or lost since a poll began (see ``poll``)
        s = settings
        self._timeout_ms = s.request_timeout_ms  # kafka-python's committed() waits forever without one
        try:
            self._kc = KafkaConsumer(
                **client_config(s),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=s.kafka.heartbeat_interval_ms,
                max_poll_interval_ms=s.kafka.max_poll_interval_ms,
            )
        except UNREACHABLE as exc:
            raise unavailable(settings, exc) from exc
        # Load the topic's metadata after subscribing and before the first poll joins the group: a leader that
        # assigns from empty metadata hands out nothing, then rebalances again at the next metadata refresh.
        try:
            self._kc.subscribe([self._topic], listener=_Listener(self))
            self._kc.partitions_for_topic(self._topic)
        except BaseException:
            self._kc.close(autocommit=False)
            raise

    # ---- rebalance callbacks (on kafka-python's network thread) ---------------------------------------------

    def _parts(self, tps: object) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self._topic}  # type: ignore[attr-defined]

    async def _on_revoked(self, tps: object, mode: Literal["revoke", "lost"]) -> None:
        parts = self._parts(tps)
        if not parts:
            return
        self._revoked |= parts
        log.info("log.partitions_revoked", group=self.group, partitions=sorted(parts), mode=mode)
        if self._on_revoke is None:
            return
        self._pending, self._in_callback = {}, mode
        try:
            self._on_revoke(parts)
        finally:
            self._in_callback = None
        pending, self._pending = self._pending, {}
        if pending and mode == "revoke":
            await self._kc.commit_async(self._offsets(pending))

    def _on_assigned(self, tps: object) -> None:
        parts = self._parts(tps)
        if not parts:
            return
        log.info("log.partitions_assigned", group=self.group, partitions=sorted(parts))
        if self._on_assign is not None:
            self._on_assign(parts)

    # ---- the port -------------------------------------------------------------------------------------------

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._topic, partition)

    def _offsets(self, positions: Mapping[int, int]) -> dict[TopicPartition, OffsetAndMetadata]:
        return {self._tp(p): OffsetAndMetadata(o, "", -1) for p, o in positions.items()}

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """kafka-python's errors as the port's: a broker that does not answer is ``EventLogUnavailableError``."""
        try:
            yield
        except UNREACHABLE as exc:
            raise unavailable(self._settings, exc) from exc
        except KafkaError as exc:
            raise EventLogError(f"{what} for group {self.group!r} on topic {self._topic!r} failed: {exc}") from exc

    def poll(self, max_records: int = 1000, timeout_ms: int = 100) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_ms`` for the first.

        kafka-python returns what an earlier fetch buffered (fetched while the caller was busy) and only then asks
        the broker for more, so a busy consumer's batch would be one cycle old and what was appended since would
        wait a whole cycle more. When the records in hand are older than ``log.kafka.poll_drain_ms``, the poll
        takes what has been appended since too, waiting at most that long for it (the broker answers a fetch at
        once when it has records).
        """
        records = self._poll_once(max_records, timeout_ms)
        drain_ms = self._settings.kafka.poll_drain_ms
        if not records or drain_ms <= 0:
            return records
        deadline = time.monotonic() + drain_ms / 1000
        while len(records) < max_records:
            # records appended less than drain_ms ago came from a fetch just answered: nothing newer to wait for
            if time.time() * 1000 - max(r.timestamp_ms for r in records) < drain_ms:
                break
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            self._revoked = set()
            more = self._poll_once(max_records - len(records), left_ms)
            if self._revoked:  # a rebalance inside that poll: what was in hand of those partitions is their new
                # owner's now (it reads from the committed positions, as this member does if they come back)
                records = [r for r in records if r.partition not in self._revoked]
            if not more:
                break
            records.extend(more)
        return sorted(records, key=lambda r: (r.partition, r.offset))

    def _poll_once(self, max_records: int, timeout_ms: int) -> list[Record]:
        with self._guard("poll"):
            batches = self._kc.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [
            Record(tp.partition, r.offset, r.key.decode() if r.key is not None else None, r.value, r.timestamp)
            for tp in sorted(batches)
            for r in batches[tp]
        ]

    def commit(self, positions: Mapping[int, int]) -> None:
        if not positions:
            return
        bad = {p: o for p, o in positions.items() if not isinstance(o, int) or o < 0}
        if bad:
            raise ValueError(f"positions must be non-negative ints; got {bad}")
        if self._in_callback == "lost":
            raise CommitFailedError(
                f"group {self.group!r}: partitions {sorted(positions)} of topic {self._topic!r} were lost (this "
                "member was evicted from the group); their records will be delivered again to their new owner"
            )
        if self._in_callback == "revoke":
            self._pending.update(positions)
            return
        stray = set(positions) - self.assignment()
        if stray:
            raise CommitFailedError(
                f"group {self.group!r}: partitions {sorted(stray)} of topic {self._topic!r} are not assigned to "
                "this consumer; their records will be delivered again to their owner"
            )
        try:
            self._kc.commit(self._offsets(positions), timeout_ms=self._timeout_ms)
        except _FENCED as exc:
            raise CommitFailedError(
                f"group {self.group!r} rebalanced before the commit of {dict(positions)} on topic {self._topic!r}; "
                f"those records will be delivered again ({type(exc).__name__})"
            ) from exc
        except UNREACHABLE as exc:
            raise unavailable(self._settings, exc) from exc
        except KafkaError as exc:
            raise EventLogError(f"commit of {dict(positions)} for group {self.group!r} failed: {exc}") from exc

    def _all_partitions(self) -> list[TopicPartition]:
        return [self._tp(p) for p in sorted(self._kc.partitions_for_topic(self._topic) or ())]

    def committed(self) -> dict[int, int]:
        out = {}
        with self._guard("reading committed positions"):
            for tp in self._all_partitions():
                offset = self._kc.committed(tp, timeout_ms=self._timeout_ms)
                if offset is not None:
                    out[tp.partition] = offset
        return out

    def assignment(self) -> set[int]:
        return self._parts(self._kc.assignment())

    def lag(self) -> dict[int, int]:
        with self._guard("reading the lag"):
            tps = self._all_partitions()
            ends = self._kc.end_offsets(tps, timeout_ms=self._timeout_ms)
            starts = self._kc.beginning_offsets(tps, timeout_ms=self._timeout_ms)
        committed = self.committed()
        return {tp.partition: ends[tp] - committed.get(tp.partition, starts[tp]) for tp in tps}

    def seek_to_committed(self) -> None:
        with self._guard("rewinding to the committed positions"):
            for tp in self._kc.assignment():
                offset = self._kc.committed(tp, timeout_ms=self._timeout_ms)
                if offset is None:
                    self._kc.seek_to_beginning(tp)
                else:
                    self._kc.seek(tp, offset)

    def close(self) -> None:
        self._kc.close(autocommit=False)
