"""deploy/local runs Cassandra and Kafka durably by default (issue: a killed Cassandra lost the app's keyspace).

The kill itself is exercised on real servers in ``tests/chaos/test_durability.py``; these checks keep the config
files from regressing without starting a JVM.
"""

from __future__ import annotations

import re
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[3] / "deploy" / "local"


def _options(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_cassandra_default_jvm_options_flush_the_system_tables():
    opts = _options(LOCAL / "conf" / "cassandra-jvm.options")
    assert not [o for o in opts if "unsafesystem" in o], "unsafesystem loses acknowledged schema on a kill"


def test_unsafe_fast_mode_is_opt_in_and_named_unsafe():
    script = (LOCAL / "services").read_text()
    assert 'UNSAFE_FAST="${LAMBDAREC_CASSANDRA_UNSAFE_FAST:-0}"' in script
    guarded = re.search(r'if \[ "\$UNSAFE_FAST" = 1 \]; then\n(.*?)\n    fi', script, re.S)
    assert guarded and "-Dcassandra.unsafesystem=true" in guarded.group(1)
    assert script.count("unsafesystem=true") == 1 + script.count("# 1: run Cassandra with -Dcassandra.unsafesystem")
    assert "LAMBDAREC_CASSANDRA_UNSAFE_FAST" in (LOCAL / "README.md").read_text()


def test_cassandra_commitlog_is_synced_as_by_default():
    conf = (LOCAL / "conf" / "cassandra.yaml.in").read_text()
    assert re.search(r"^commitlog_sync: (periodic|batch|group)$", conf, re.M)
    period = re.search(r"^commitlog_sync_period: (\d+)ms$", conf, re.M)
    assert period is None or int(period.group(1)) <= 10000  # Cassandra's default period


def test_kafka_keeps_its_flush_defaults():
    props = _options(LOCAL / "conf" / "kafka-server.properties.in")
    keys = {p.split("=", 1)[0] for p in props}
    assert not {k for k in keys if k.startswith("log.flush.")}, "leave flushing to Kafka's documented defaults"
    assert "unclean.leader.election.enable=true" not in props
