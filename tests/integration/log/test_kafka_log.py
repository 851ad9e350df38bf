"""The event-log contract on a real Apache Kafka broker (fixture ``kafka_endpoint``); one topic per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from lambdarec.eventlog import EventLog, open_log
from lambdarec.settings import LogSettings
from tests.integration.log.contract import EventLogContract, MakeLog

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


class TestKafkaEventLog(EventLogContract):
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
