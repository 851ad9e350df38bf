"""The event log on Apache Kafka (kafka-python).

``kafka://host1:9092,host2:9092/topic`` names the bootstrap brokers and the topic. Records are keyed by
``user_id`` and partitioned by Kafka's own (murmur2) partitioner, so one user's events stay in order and other
Kafka producers agree on the partition. The producer is idempotent with ``acks='all'`` and ``append`` flushes
before it returns. Dead letters go to the ``log.dead_letter`` topic (one partition): the value is the original
bytes, headers ``reason`` and ``source`` (``topic:partition:offset``). Credentials come from ``log.kafka.username`` /
``log.kafka.password`` (SASL), never from the URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from lambdarec.eventlog.base import (
    AppendOutcomeUnknownError,
    Consumer,
    DeadLetter,
    EventLog,
    EventLogError,
    PartitionCallback,
    Record,
    keyed_values,
)
from lambdarec.eventlog.kafka_client import UNREACHABLE, client_config, kafka_target, unavailable
from lambdarec.eventlog.kafka_consumer import KafkaGroupConsumer
from lambdarec.events import Event
from lambdarec.logs import get_logger
from lambdarec.settings import LogSettings

DEAD_LETTER_PARTITIONS = 1  # one partition keeps dead letters in arrival order for `read_dead_letters`
# A dead letter is written after its source record was appended; the two producers' clocks may differ this much.
CLOCK_SKEW_MS = 300_000
_SEEN_SOURCES_MAX = 100_000  # sources remembered from the dead-letter topic before the memory is dropped

log = get_logger(__name__)


class KafkaEventLog(EventLog):
    """The ``EventLog`` port on a Kafka topic. Connections open on first use."""

    def __init__(self, settings: LogSettings):
        self.settings = settings
        self.servers, self.topic = kafka_target(settings.url)
        self.dead_letter_topic = settings.dead_letter
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._reader: KafkaConsumer | None = None
        # (from which timestamp, up to which offset) the dead-letter topic was read, and the sources found there
        self._seen: tuple[int, int, set[tuple[int, int]]] | None = None

    def _client(self, attr: str, factory: Any, **extra: Any) -> Any:
        with self._lock:
            if getattr(self, attr) is None:
                try:
                    setattr(self, attr, factory(**client_config(self.settings), **extra))
                except UNREACHABLE as exc:
                    raise unavailable(self.settings, exc) from exc
            return getattr(self, attr)

    def producer(self) -> KafkaProducer:
        """The idempotent producer (``acks='all'``), created on first use."""
        return self._client(
            "_producer",
            KafkaProducer,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_block_ms=self.settings.request_timeout_ms,
        )

    def admin(self) -> KafkaAdminClient:
        """The admin client, created on first use."""
        return self._client("_admin", KafkaAdminClient)

    def reader(self) -> KafkaConsumer:
        """A consumer outside any group (no commits), for offsets and dead letters."""
        return self._client("_reader", KafkaConsumer, group_id=None, enable_auto_commit=False)

    # ---- producing ------------------------------------------------------------------------------------------

    def _send(self, topic: str, items: Iterable[tuple[str | None, bytes, list[tuple[str, bytes]] | None]]) -> int:
        producer = self.producer()
        futures: list[Any] = []
        try:
            for key, value, headers in items:
                futures.append(
                    producer.send(topic, key=key.encode() if key is not None else None, value=value, headers=headers)
                )
            producer.flush(timeout=self.settings.request_timeout_ms / 1000)
            for future in futures:
                future.get(timeout=0)
        except (KafkaError, OSError) as exc:
            if not futures:  # nothing was handed to the producer: nothing can reach the log
                if isinstance(exc, UNREACHABLE):
                    raise unavailable(self.settings, exc) from exc
                where = f"Kafka topic {topic!r} at {','.join(self.servers)}"
                raise EventLogError(f"appending to {where} failed: {exc}") from exc
            # Handed over but not confirmed: the producer may still deliver them, so the outcome is unknown.
            confirmed = sum(1 for f in futures if f.succeeded())
            raise AppendOutcomeUnknownError(
                f"Kafka at {','.join(self.servers)} (topic {topic!r}) did not confirm {len(futures) - confirmed} of "
                f"{len(futures)} events: {type(exc).__name__}: {exc}",
                confirmed=confirmed,
            ) from exc
        return len(futures)

    def append(self, events: Iterable[Event | bytes], keys: Iterable[str | None] | None = None) -> int:
        return self._send(self.topic, ((k, v, None) for k, v in keyed_values(events, keys)))

    def dead_letter(self, raw: bytes, reason: str, source: tuple[int, int] | None = None) -> None:
        headers = [("reason", reason.encode())]
        if source is not None:
            headers.append(("source", f"{self.topic}:{source[0]}:{source[1]}".encode()))
        self._send(self.dead_letter_topic, [(None, bytes(raw), headers)])
        log.warning("log.dead_letter", reason=reason, source=source, size=len(raw))

    def dead_letter_records(self, letters: Sequence[tuple[Record, str]]) -> int:
        if not letters:
            return 0
        since = min(r.timestamp_ms for r, _ in letters) - CLOCK_SKEW_MS
        seen = self._dead_lettered_since(since)
        new = [(r, reason) for r, reason in letters if (r.partition, r.offset) not in seen]
        items = [
            (
                None,
                bytes(r.value),
                [("reason", reason.encode()), ("source", f"{self.topic}:{r.partition}:{r.offset}".encode())],
            )
            for r, reason in new
        ]
        self._send(self.dead_letter_topic, items)
        seen.update((r.partition, r.offset) for r, _ in new)
        for r, reason in new:
            log.warning("log.dead_letter", reason=reason, source=(r.partition, r.offset), size=len(r.value))
        return len(new)

    def _dead_lettered_since(self, since_ms: int) -> set[tuple[int, int]]:
        """Sources (partition, offset) of this topic's records in the dead-letter topic from ``since_ms`` on.

        Read incrementally: what was read before is remembered (up to ``_SEEN_SOURCES_MAX`` sources), so a
        consumer reads each dead letter about once, and only when it has one to write.
        """
        tp = TopicPartition(self.dead_letter_topic, 0)
        reader = self.reader()
        prefix = f"{self.topic}:".encode()
        with self._lock:
            try:
                end = reader.end_offsets([tp])[tp]
                since_ms = max(since_ms, 0)
                if self._seen is not None and self._seen[0] <= since_ms and len(self._seen[2]) < _SEEN_SOURCES_MAX:
                    from_ms, start, seen = self._seen
                else:
                    found = reader.offsets_for_times({tp: since_ms})[tp]
                    from_ms, start, seen = since_ms, (found.offset if found is not None else end), set()
                if start < end:
                    reader.assign([tp])
                    reader.seek(tp, start)
                    while reader.position(tp) < end:
                        batches = reader.poll(timeout_ms=self.settings.request_timeout_ms)
                        if not batches:
                            raise EventLogError(f"reading the dead-letter topic {self.dead_letter_topic!r} timed out")
                        for record in (r for batch in batches.values() for r in batch):
                            source = dict(record.headers or []).get("source", b"")
                            if source.startswith(prefix):
                                part, off = source[len(prefix) :].split(b":")
                                seen.add((int(part), int(off)))
                    reader.assign([])
                self._seen = (from_ms, end, seen)
            except UNREACHABLE as exc:
                raise unavailable(self.settings, exc) from exc
        return seen

    # ---- reading outside a group ----------------------------------------------------------------------------

    def _partitions(self, topic: str) -> list[TopicPartition]:
        described = self.admin().describe_topics([topic])
        return [TopicPartition(topic, p["partition_index"]) for t in described for p in t["partitions"]]

    def end_offsets(self) -> dict[int, int]:
        tps = self._partitions(self.topic)
        reader = self.reader()
        with self._lock:
            ends = reader.end_offsets(tps) if tps else {}
        return {tp.partition: off for tp, off in sorted(ends.items())}

    def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        tps = self._partitions(self.dead_letter_topic)
        if not tps or limit <= 0:
            return []
        reader = self.reader()
        with self._lock:
            ends = reader.end_offsets(tps)
            starts = reader.beginning_offsets(tps)
            reader.assign(tps)
            for tp in tps:
                reader.seek(tp, max(starts[tp], ends[tp] - limit))
            found = []
            while any(reader.position(tp) < ends[tp] for tp in tps):
                batches = reader.poll(timeout_ms=self.settings.request_timeout_ms)
                if not batches:
                    break
                found.extend(r for batch in batches.values() for r in batch)
            reader.assign([])
        found.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        return [_dead_letter(r) for r in found[-limit:]]

    # ---- topics and lifecycle -------------------------------------------------------------------------------

    def ensure_topic(self, partitions: int | None = None) -> int:
        want = partitions or self.settings.partitions
        wanted = {self.topic: want, self.dead_letter_topic: DEAD_LETTER_PARTITIONS}
        admin = self.admin()
        try:
            existing = set(admin.list_topics())
            missing = {t: n for t, n in wanted.items() if t not in existing}
            if missing:
                spec = {
                    t: {"num_partitions": n, "replication_factor": self.settings.kafka.replication_factor}
                    for t, n in missing.items()
                }
                try:
                    admin.create_topics(spec, wait_for_metadata=True)
                    log.info("log.created", topics=spec, servers=self.servers)
                except TopicAlreadyExistsError:
                    pass  # another process created it between our list and create
            return len(self._partitions(self.topic))
        except UNREACHABLE as exc:
            raise unavailable(self.settings, exc) from exc

    def consumer(
        self,
        group: str | None = None,
        *,
        on_assign: PartitionCallback | None = None,
        on_revoke: PartitionCallback | None = None,
    ) -> Consumer:
        return KafkaGroupConsumer(
            self.settings, group or self.settings.consumer_group, on_assign=on_assign, on_revoke=on_revoke
        )

    def ping(self) -> None:
        try:
            self.admin().describe_cluster()
        except (KafkaError, OSError) as exc:
            raise unavailable(self.settings, exc) from exc

    def close(self) -> None:
        with self._lock:
            for attr in ("_producer", "_reader", "_admin"):
                client = getattr(self, attr)
                if client is not None:
                    if attr == "_producer":  # a dead broker must not hold the process forever at exit
                        client.close(timeout=self.settings.request_timeout_ms / 1000)
                    else:
                        client.close()
                    setattr(self, attr, None)


def _dead_letter(record: Any) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
    source = None
    if "source" in headers:
        _, part, off = headers["source"].rsplit(":", 2)
        source = (int(part), int(off))
    return DeadLetter(
        value=record.value, reason=headers.get("reason", ""), source=source, timestamp_ms=record.timestamp
    )
