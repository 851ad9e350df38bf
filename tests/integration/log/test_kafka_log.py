"""The event-log contract on a real Apache Kafka broker (fixture ``kafka_endpoint``); one topic per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from lambdarec.eventlog import EventLog, open_log
from lambdarec.settings import LogSettings
from tests.integration.log.contract import EventLogContract, MakeLog, drain, events, group, seq

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


class TestKafkaEventLog(EventLogContract):
    def test_a_poll_takes_what_was_appended_while_the_consumer_was_busy(self, log: EventLog) -> None:
        """kafka-python hands back what an earlier fetch buffered and only then asks the broker for more: records
        appended while the consumer was busy with the previous batch would wait one whole cycle more. A poll whose
        records are older than ``log.kafka.poll_drain_ms`` takes what was appended since as well."""
        settings = log.settings  # type: ignore[attr-defined]
        settings.kafka.poll_drain_ms = 400  # generous: a loaded test box answers a fetch in well under that
        with log.consumer(group("g-busy")) as consumer:
            log.append(events(10))
            assert len(drain(consumer, 10)) == 10  # the poll that returned them asked the broker for more
            log.append(events(10, start=10))  # that fetch answers with these: buffered while the consumer is busy
            time.sleep(1.0)  # so they are older than poll_drain_ms when polled
            log.append(events(10, start=20))  # appended after the answer: only a fetch of its own brings them
            time.sleep(0.1)
            got = consumer.poll(1000, timeout_ms=1000)
            assert sorted(seq(r) for r in got) == list(range(10, 30))
            settings.kafka.poll_drain_ms = 0
            log.append(events(5, start=30))
            assert sorted(seq(r) for r in drain(consumer, 5)) == list(range(30, 35))

    @pytest.fixture
    def make_log(self, kafka_endpoint: tuple[str, int]) -> Iterator[MakeLog]:
        host, port = kafka_endpoint
        name = uuid.uuid4().hex[:12]
        settings = LogSettings(
            url=f"kafka://{host}:{port}/events-{name}",
            dead_letter=f"dead-{name}",
            partitions=3,
            session_timeout_ms=6000,
            kafka={"heartbeat_interval_ms": 300, "max_poll_interval_ms": 15000},
            request_timeout_ms=15000,
        )
        opened: list[EventLog] = []

        def make() -> EventLog:
            opened.append(open_log(settings))
            return opened[-1]

        yield make
        for log in opened:
            log.close()
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}")
        try:
            present = set(admin.list_topics()) & {f"events-{name}", f"dead-{name}"}
            if present:
                admin.delete_topics(sorted(present))
        finally:
            admin.close()
