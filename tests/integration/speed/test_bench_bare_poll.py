"""The speed benchmark's bare poll reference on Kafka: it never hangs on a topic that holds fewer records than it
was asked to poll (a run of the benchmark waited forever in it); it says how many it saw instead."""

from __future__ import annotations

import secrets

import pytest
from kafka import KafkaProducer

from benchmarks.speed_backends import bare_kafka_rate

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def test_bare_poll_gives_up_with_what_it_saw_when_the_topic_holds_fewer_records(kafka_endpoint) -> None:
    host, port = kafka_endpoint
    bootstrap, topic = f"{host}:{port}", f"bench-bare-{secrets.token_hex(4)}"
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for k in range(50):
        producer.send(topic, f"e{k}".encode())
    producer.flush()
    producer.close()
    assert bare_kafka_rate(bootstrap, topic, 50, 1000) > 0
    with pytest.raises(RuntimeError, match="saw 50 of 80 records"):
        bare_kafka_rate(bootstrap, topic, 80, 1000, timeout_s=5.0)
