"""How lambdarec connects to Kafka: the broker list and topic of ``log.url``, the client options shared by the
producer, the group consumers and the admin client, and the port's error for a broker that does not answer.

Example
-------
>>> kafka_target("kafka://h1:9092,h2:9092/interactions")
(['h1:9092', 'h2:9092'], 'interactions')
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from lambdarec.eventlog.base import EventLogUnavailableError
from lambdarec.masking import mask_url
from lambdarec.settings import LogSettings

CLIENT_ID = "lambdarec"

# What kafka-python raises when no broker answers (at bootstrap, or while waiting for metadata or a flush).
UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError)


def kafka_target(url: str) -> tuple[list[str], str]:
    """``kafka://h1:9092,h2:9092/topic`` -> (["h1:9092", "h2:9092"], "topic")."""
    parts = urlsplit(url)
    servers = [s.strip() for s in parts.netloc.split(",") if s.strip()]
    topic = parts.path.strip("/")
    if parts.scheme != "kafka" or not servers or not topic or "/" in topic or "@" in parts.netloc:
        raise ValueError(
            f"log.url {mask_url(url)!r} is not kafka://host1:9092,host2:9092/topic "
            "(credentials belong in log.kafka.username and log.kafka.password)"
        )
    return servers, topic


def client_config(settings: LogSettings) -> dict[str, Any]:
    """Connection options shared by the producer, consumers and admin client."""
    servers, _ = kafka_target(settings.url)
    kafka = settings.kafka
    cfg: dict[str, Any] = {
        "bootstrap_servers": servers,
        "client_id": CLIENT_ID,
        "request_timeout_ms": settings.request_timeout_ms,
        "bootstrap_timeout_ms": settings.request_timeout_ms,
        "security_protocol": kafka.security_protocol or ("SASL_PLAINTEXT" if kafka.username else "PLAINTEXT"),
    }
    if kafka.username:
        cfg["sasl_mechanism"] = kafka.sasl_mechanism
        cfg["sasl_plain_username"] = kafka.username
        cfg["sasl_plain_password"] = kafka.password.get_secret_value() if kafka.password else None
    return cfg


def unavailable(settings: LogSettings, exc: Exception) -> EventLogUnavailableError:
    """The port's error for a broker that did not answer, naming the brokers and the topic."""
    servers, topic = kafka_target(settings.url)
    return EventLogUnavailableError(f"Kafka at {','.join(servers)} (topic {topic!r}): {exc}")
