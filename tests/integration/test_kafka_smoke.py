"""Kafka smoke test with kafka-python directly: the broker the integration tests rely on works as Kafka should."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

MESSAGES = 1000
PARTITIONS = 3


def consume(servers: str, topic: str, group: str, want: int, timeout_s: float) -> list:
    """Join ``group``, read until ``want`` messages came or ``timeout_s`` passed *after* partitions were
    assigned (so an empty result means nothing was there, not that the join was slow); commit what was read."""
    consumer = KafkaConsumer(
        bootstrap_servers=servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    got: list = []
    join_deadline = time.monotonic() + 60
    deadline = None
    try:
        # the group's leader assigns only the partitions its own metadata knows: a join that races the topic's
        # creation gets none ("No partition metadata") until a later refresh, so subscribe once it knows them all
        while len(consumer.partitions_for_topic(topic) or ()) < PARTITIONS:
            assert time.monotonic() < join_deadline, "the topic's partitions not in the consumer's metadata in 60 s"
            time.sleep(0.2)
        consumer.subscribe([topic])
        while len(got) < want and (deadline is None or time.monotonic() < deadline):
            for records in consumer.poll(timeout_ms=200).values():
                got += records
            if deadline is None and consumer.assignment():
                deadline = time.monotonic() + timeout_s
            assert time.monotonic() < join_deadline, "no partitions assigned within 60 s"
        if got:
            consumer.commit()  # the positions of everything polled
    finally:
        consumer.close(autocommit=False)
    return got


def test_keyed_messages_round_trip_through_a_consumer_group_with_manual_commit(
    kafka_endpoint: tuple[str, int],
) -> None:
    servers = "{}:{}".format(*kafka_endpoint)
    topic, group = f"smoke-{uuid.uuid4().hex[:10]}", f"smoke-group-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}}, wait_for_metadata=True)
        [described] = admin.describe_topics([topic])
        assert len(described["partitions"]) == PARTITIONS

        producer = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True)
        for i in range(MESSAGES):
            producer.send(topic, key=f"user-{i % 37}".encode(), value=f"{i}".encode())
        producer.flush(timeout=30)
        producer.close()

        got = consume(servers, topic, group, MESSAGES, timeout_s=60)
        assert sorted(int(r.value) for r in got) == list(range(MESSAGES))
        assert {r.partition for r in got} == set(range(PARTITIONS))
        for key in {r.key for r in got}:
            mine = [r for r in got if r.key == key]
            assert len({r.partition for r in mine}) == 1, f"key {key!r} spread over partitions"
            assert [int(r.value) for r in mine] == sorted(int(r.value) for r in mine), f"key {key!r} out of order"

        again = consume(servers, topic, group, 1, timeout_s=2)  # a restarted member of the same group
        assert again == [], f"{len(again)} committed messages were delivered again"

        reader = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = reader.end_offsets(tps)
        assert {tp: reader.committed(tp) for tp in tps} == ends
        reader.close(autocommit=False)
    finally:
        admin.delete_topics([topic])
        admin.close()
