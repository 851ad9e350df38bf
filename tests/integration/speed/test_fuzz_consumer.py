"""Fuzz the speed consumer on both log backends (issue 12): whatever bytes a producer that skips validation
appends, no exception escapes and every record is applied, skipped as a repeat, or dead-lettered, once.

SQLite store + SQLite log (embedded) and Cassandra store + Kafka log (real servers), like ``test_speed``.
"""

# ruff: noqa: F811  (the backend fixtures of test_speed are imported by name and requested as arguments)

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lambdarec.eventlog import open_log
from speed_layer.consumer import SpeedConsumer
from tests.fuzzing import examples, wire_bytes
from tests.integration.speed.test_speed import settings  # noqa: F401  (fixture)

pytestmark = pytest.mark.fuzz


def test_every_record_is_applied_skipped_or_dead_lettered_once(settings, request) -> None:
    real = "real" in request.node.callspec.id
    with open_log(settings) as log, SpeedConsumer(settings) as consumer:
        log.ensure_topic()
        seen_dead: set[tuple[int, int]] = set()

        @hsettings(
            max_examples=examples(8 if real else 25),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(st.lists(wire_bytes, min_size=1, max_size=40), st.lists(st.sampled_from(["u1", "u2", "u3", None])))
        def check(records: list[bytes], keys: list[str | None]) -> None:
            before = consumer.stats.to_json()
            ends_before = log.end_offsets()
            log.append(records, keys=[keys[n % len(keys)] if keys else None for n in range(len(records))])
            deadline = time.monotonic() + 120
            while True:
                consumer.step()  # nothing may escape
                if sum(consumer.consumer.lag().values()) == 0:
                    break
                assert time.monotonic() < deadline, "the consumer did not drain the log"
            after = consumer.stats.to_json()
            handled = sum(after[k] - before[k] for k in ("processed", "duplicates", "dead_lettered"))
            assert handled == len(records), (before, after)
            new = [d.source for d in log.read_dead_letters(limit=10_000) if d.source not in seen_dead]
            assert len(new) == len(set(new)) == after["dead_lettered"] - before["dead_lettered"]
            assert all(d is not None and d[1] >= ends_before.get(d[0], 0) for d in new)
            seen_dead.update(new)

        check()
