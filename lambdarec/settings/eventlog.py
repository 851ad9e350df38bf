"""``[log]``: the event log, with the options of each backend."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from lambdarec.settings.section import Section, check_scheme

LOG_SCHEMES = ("sqlite", "kafka")


class KafkaLogSettings(Section):
    """The Kafka event log (``kafka://HOSTS/TOPIC``): credentials, topic creation and group membership."""

    username: str | None = Field(None, description="Kafka SASL user name.")
    password: SecretStr | None = Field(None, description="Kafka SASL password. Masked in `config show`.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = Field(
        None, description="Kafka security protocol; unset: SASL_PLAINTEXT when `username` is set, else PLAINTEXT."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="Kafka SASL mechanism used with `username` and `password`."
    )
    replication_factor: int = Field(1, ge=1, description="Replicas per partition when the Kafka topics are created.")
    heartbeat_interval_ms: int = Field(
        3000, ge=100, description="Kafka consumer heartbeat interval; keep it below a third of `session_timeout_ms`."
    )
    max_poll_interval_ms: int = Field(
        300000, ge=1000, description="Kafka: the longest gap between two polls before a consumer leaves its group."
    )
    poll_drain_ms: int = Field(
        20,
        ge=0,
        description="Kafka: once a poll has records that were fetched a while ago (buffered while the consumer was "
        "busy), how long it may wait for what has been appended since, so a batch holds everything the log has "
        "and its newest events do not wait for the next cycle; 0 returns the buffered records alone.",
    )


class SQLiteLogSettings(Section):
    """The embedded SQLite event log (``sqlite:///DIR``)."""

    idle_poll_ms: int = Field(
        50, ge=1, description="How often a consumer with nothing to read looks again while a poll waits."
    )


class LogSettings(Section):
    """The event log: fresh interactions flowing from producers to the speed layer."""

    url: str = Field(
        "sqlite:///var/events",
        description="Where events are appended. `sqlite:///relative/dir` or `kafka://host1:9092,host2:9092/topic`.",
    )
    consumer_group: str | None = Field(
        None,
        description="Consumer group whose positions the speed layer commits. Unset: `TOPIC-speed` on Kafka "
        "(so two deployments on one cluster never share a group), `lambdarec-speed` on SQLite.",
    )
    dead_letter: str | None = Field(
        None,
        description="Topic (Kafka) or table (SQLite) receiving bad events with the reason. Unset: "
        "`TOPIC-dead-letter` on Kafka, `lambdarec-dead-letter` on SQLite.",
    )
    partitions: int = Field(3, ge=1, description="Partitions when the speed layer creates the topic.")
    max_event_bytes: int = Field(16384, ge=256, description="Events larger than this go to the dead-letter log.")
    session_timeout_ms: int = Field(
        10000,
        ge=1000,
        description="A consumer not heard from for this long leaves its group and its partitions move to the "
        "others. Kafka hears heartbeats (the broker allows 6000 and up by default); SQLite hears polls and commits.",
    )
    request_timeout_ms: int = Field(
        30000,
        ge=1000,
        description="Timeout of one Kafka request or producer flush, and how long SQLite waits for a write lock.",
    )
    kafka: KafkaLogSettings = Field(default_factory=KafkaLogSettings, description="The Kafka backend.")
    sqlite: SQLiteLogSettings = Field(default_factory=SQLiteLogSettings, description="The SQLite backend.")
    impressions_topic: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$",  # a Kafka topic name, never . or ..
        description="Where `impression` events go, apart from the others: a Kafka topic of this name on the same "
        "brokers, or on SQLite a log of its own in the sub-directory of this name. Ingest (`POST /v1/events`, "
        "`lambdarec events send`, impressions stamped by serving) appends them there; the impressions consumer "
        "(`lambdarec speed run --impressions`) and the impressions archiver (`lambdarec archive run --impressions`) "
        "read it, so the positive-event consumer never reads them. Needs `speed.feedback.own_consumer`. Unset: "
        "impressions share the topic of `url`.",
    )

    _scheme = field_validator("url")(lambda v: check_scheme(v, LOG_SCHEMES, "log"))

    @model_validator(mode="after")
    def _names_from_topic(self) -> LogSettings:
        # Derived, not stored as set: a later change of `url` derives them again unless they were given.
        for name, suffix in (("consumer_group", "speed"), ("dead_letter", "dead-letter")):
            if getattr(self, name) is None or name not in self.model_fields_set:
                self.__dict__[name] = derived_log_name(self.url, suffix)
        return self


def derived_log_name(url: str, suffix: str) -> str:
    """The consumer group or dead-letter name a log URL implies: ``TOPIC-SUFFIX`` on Kafka, ``lambdarec-SUFFIX``
    on SQLite (its directory is the deployment's own).

    >>> derived_log_name("kafka://h:9092/shop-events", "speed"), derived_log_name("sqlite:///var/events", "speed")
    ('shop-events-speed', 'lambdarec-speed')
    """
    parts = urlsplit(url)
    topic = parts.path.strip("/") if parts.scheme == "kafka" else ""
    return f"{topic or 'lambdarec'}-{suffix}"


def impressions_log(log: LogSettings) -> LogSettings | None:
    """The settings of the impressions log (``log.impressions_topic``), None when impressions share ``log.url``:
    its URL names that topic (Kafka) or sub-directory (SQLite); its consumer group and dead-letter names derive
    from it as ``log.url``'s do, every other option is ``log``'s.

    >>> impressions_log(LogSettings(url="kafka://h:9092/shop", impressions_topic="shop-imp")).url
    'kafka://h:9092/shop-imp'
    >>> impressions_log(LogSettings(url="sqlite:///var/events", impressions_topic="impressions")).url
    'sqlite:///var/events/impressions'
    """
    if log.impressions_topic is None:
        return None
    parts = urlsplit(log.url)
    if parts.scheme == "kafka":
        path = "/" + log.impressions_topic
    else:
        path = parts.path.rstrip("/") + "/" + log.impressions_topic
    fields = log.model_dump(exclude={"url", "consumer_group", "dead_letter", "impressions_topic"}, exclude_unset=True)
    url = f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")
    return LogSettings.model_validate({**fields, "url": url})
