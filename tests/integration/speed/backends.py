"""Settings of a speed-layer test on the embedded backends (SQLite store and log) or the real ones (a throwaway
Cassandra keyspace and Kafka topic), by the fixture's parameter ``embedded`` or ``real``."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import pytest

from lambdarec.settings import Settings
from tests.cassandra import throwaway_keyspace


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path, s: dict[str, Any], name: str) -> Settings:
    """``s`` (overrides; its ``store`` section is extended) on the backends ``request.param`` names."""
    s = {**s, "store": dict(s.get("store", {}))}
    if request.param == "embedded":
        s["store"] |= {"url": f"sqlite:///{tmp_path}/store"}
        s |= {"log": {"url": f"sqlite:///{tmp_path}/events"}}
        return Settings.load(overrides=s)
    chost, cport = request.getfixturevalue("cassandra_endpoint")
    khost, kport = request.getfixturevalue("kafka_endpoint")
    keyspace = contextlib.ExitStack()
    request.addfinalizer(keyspace.close)
    topic = f"{name}-{secrets.token_hex(4)}"
    s["store"] |= {"url": keyspace.enter_context(throwaway_keyspace((chost, cport), f"lambdarec_{name}"))}
    s |= {"log": {"url": f"kafka://{khost}:{kport}/{topic}", "dead_letter": f"{topic}-dlq", "consumer_group": topic}}
    return Settings.load(overrides=s)
