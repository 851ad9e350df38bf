"""send_events, the port's small helpers, and open_log's choice of backend (on the embedded SQLite log)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdarec.eventlog import EventLog, Record, next_positions, open_log, partition_for, send_events
from lambdarec.eventlog.base import keyed_values
from lambdarec.eventlog.kafka_client import client_config, kafka_target
from lambdarec.eventlog.sqlite_db import sqlite_dir
from lambdarec.events import Event, EventRules, parse_event
from lambdarec.settings import LogSettings

NOW = 1_764_400_000.0
RULES = EventRules(known_types=frozenset({"view", "click"}), max_bytes=1024, future_tolerance_s=60.0)


def line(i: int, user: str = "u1", **extra: object) -> bytes:
    ev = {"event_id": f"e{i}", "user_id": user, "item_id": "i1", "event_type": "view", "timestamp": NOW - i}
    return json.dumps({**ev, **extra}).encode()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    with open_log(LogSettings(url=f"sqlite:///{tmp_path}/log", partitions=3)) as log:
        yield log


def read_all(log: EventLog) -> list[Record]:
    with log.consumer("reader") as consumer:
        return consumer.poll(max_records=10_000, timeout_ms=0)


def test_valid_events_are_appended_and_invalid_ones_reported_not_appended(log: EventLog) -> None:
    items = [line(0), b"not json", line(1, event_type="like"), line(2).decode(), line(3, timestamp=NOW + 3600)]
    result = send_events(log, items, RULES, now=NOW)
    assert (result.accepted, result.rejected) == (2, 3)
    assert [r.index for r in result.rejections] == [1, 2, 4]
    reasons = [r.reason for r in result.rejections]
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("unknown event_type 'like'")
    assert "in the future" in reasons[2]
    stored = read_all(log)
    assert sorted(r.value for r in stored) == sorted([line(0), line(2)])  # original bytes, lossless
    assert {r.key for r in stored} == {"u1"}
    assert result.to_json()["rejected"] == 3


def test_event_objects_are_validated_too_and_batches_keep_order(log: EventLog) -> None:
    good = Event(event_id="a", user_id="u9", item_id="i", event_type="click", timestamp=NOW)
    bad = Event(event_id="b", user_id="u9", item_id="i", event_type="nope", timestamp=NOW)
    items = [good, bad] + [line(i, user="u9") for i in range(10)]
    result = send_events(log, items, RULES, now=NOW, batch=3)
    assert (result.accepted, result.rejected) == (11, 1)
    assert result.rejections[0].index == 1
    stored = sorted(read_all(log), key=lambda r: r.offset)
    assert [parse_event(r.value).event_id for r in stored] == ["a"] + [f"e{i}" for i in range(10)]


def test_nothing_to_send_appends_nothing(log: EventLog) -> None:
    assert send_events(log, [], RULES).accepted == 0
    assert sum(log.end_offsets().values()) == 0


def test_partition_for_is_stable_and_in_range() -> None:
    assert partition_for("user-1", 3) == partition_for("user-1", 3)  # not Python's salted hash()
    assert partition_for("user-1", 3) == 2  # crc32(b"user-1") = 2116437524
    assert {partition_for(f"u{i}", 3) for i in range(50)} == {0, 1, 2}
    assert partition_for(None, 3) == 0


def test_next_positions_is_one_past_the_highest_offset_per_partition() -> None:
    recs = [Record(0, 4, None, b"", 0), Record(0, 2, None, b"", 0), Record(2, 9, None, b"", 0)]
    assert next_positions(recs) == {0: 5, 2: 10}
    assert next_positions([]) == {}


def test_keyed_values_keys_events_by_user_and_bytes_by_the_given_keys() -> None:
    ev = Event(event_id="a", user_id="u1", item_id="i", event_type="view", timestamp=NOW)
    pairs = list(keyed_values([ev, b"raw"], None))
    assert pairs[0][0] == "u1" and parse_event(pairs[0][1]) == ev
    assert pairs[1] == (None, b"raw")
    assert list(keyed_values([b"x", ev], ["k", "override"]))[1][0] == "override"


def test_urls_name_a_directory_or_brokers_and_topic(tmp_path: Path) -> None:
    assert sqlite_dir("sqlite:///var/events") == Path("var/events")
    assert sqlite_dir("sqlite:////srv/events") == Path("/srv/events")
    assert kafka_target("kafka://h1:9092,h2:9092/interactions") == (["h1:9092", "h2:9092"], "interactions")
    for bad in ("kafka://h1:9092", "kafka://h1:9092/", "kafka://u:p@h1:9092/t"):
        with pytest.raises(ValueError, match="kafka://host1:9092,host2:9092/topic"):
            kafka_target(bad)
    with pytest.raises(ValueError, match="sqlite:///relative/dir"):
        sqlite_dir("sqlite://host/dir")


def test_kafka_credentials_turn_on_sasl() -> None:
    plain = client_config(LogSettings(url="kafka://h:9092/t"))
    assert plain["security_protocol"] == "PLAINTEXT" and "sasl_mechanism" not in plain
    sasl = client_config(LogSettings(url="kafka://h:9092/t", kafka={"username": "svc", "password": "pw"}))  # type: ignore[arg-type]
    assert (sasl["security_protocol"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "SASL_PLAINTEXT",
        "svc",
        "pw",
    )


def test_open_log_picks_the_backend_by_scheme_and_kafka_connects_lazily(tmp_path: Path) -> None:
    from lambdarec.eventlog.kafka import KafkaEventLog
    from lambdarec.eventlog.sqlite import SQLiteEventLog

    with open_log(LogSettings(url=f"sqlite:///{tmp_path}/x")) as log:
        assert isinstance(log, SQLiteEventLog)
    kafka = open_log(LogSettings(url="kafka://127.0.0.1:1/t"))  # nothing listens there; nothing connects yet
    assert isinstance(kafka, KafkaEventLog)
    kafka.close()
