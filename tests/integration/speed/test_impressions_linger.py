"""The impressions consumer lingers (``speed.feedback.impressions_linger_ms``): after its first record it polls on,
so one batch holds what arrived meanwhile (one row read and write per user for more impressions); a rebalance
while it lingers leaves the revoked partitions' records to their new owner, so each impression is applied once.
Embedded backends (the SQLite log has consumer groups that rebalance as Kafka's do)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from lambdarec.eventlog import open_ingest_log
from lambdarec.events import Event, encode_event
from lambdarec.settings import Settings
from lambdarec.store import open_store
from speed_layer.impression_consumer import ImpressionConsumer

NOW = time.time() - 600


def settings_at(tmp_path: Path, linger_ms: int) -> Settings:
    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events", "impressions_topic": "shown"},
            "speed": {"feedback": {"own_consumer": True, "impressions_linger_ms": linger_ms}},
        }
    )


def impressions(n: int, start: int = 0) -> list[Event]:
    return [
        Event(
            event_id=f"s{k}",
            user_id=f"u{k % 8}",
            item_id=f"i{k % 5}",
            event_type="impression",
            timestamp=NOW + k,
            item_ids=(f"i{k % 5}", f"i{(k + 1) % 5}"),
        )
        for k in range(start, start + n)
    ]


def append(settings: Settings, events: list[Event]) -> None:
    with open_ingest_log(settings) as log:
        log.ensure_topic(4)
        log.append([encode_event(e) for e in events], keys=[e.user_id for e in events])


def expected_rows(events: list[Event]) -> dict[str, dict[str, list[float]]]:
    rows: dict[str, dict[str, list[float]]] = {}
    for e in events:
        for item in e.item_ids:
            rows.setdefault(e.user_id, {}).setdefault(item, []).append(e.timestamp)
    return rows


def test_one_batch_holds_what_arrived_while_it_lingered(tmp_path: Path) -> None:
    settings = settings_at(tmp_path, 1500)
    append(settings, impressions(5))
    with ImpressionConsumer(settings) as consumer:
        late = threading.Timer(0.3, append, (settings, impressions(5, start=5)))
        late.start()
        try:
            handled = consumer.step()
        finally:
            late.join()
        assert handled == 10 and consumer.stats.batches == 1 and consumer.stats.processed == 10
    unlingering = settings_at(tmp_path / "second", 0)
    append(unlingering, impressions(5))
    with ImpressionConsumer(unlingering) as consumer:
        late = threading.Timer(1.0, append, (unlingering, impressions(5, start=5)))  # well after one poll
        late.start()
        try:
            assert consumer.step() == 5  # 0: whatever one poll returns
        finally:
            late.join()


def test_a_rebalance_while_lingering_leaves_the_revoked_partitions_to_their_new_owner(tmp_path: Path) -> None:
    settings = settings_at(tmp_path, 2500)
    events = impressions(40)
    append(settings, events)
    with ImpressionConsumer(settings) as first, ImpressionConsumer(settings) as second:
        errors: list[BaseException] = []

        def lingering() -> None:
            try:
                first.step()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        runner = threading.Thread(target=lingering)
        runner.start()
        time.sleep(0.5)
        deadline = time.monotonic() + 20
        while runner.is_alive() and time.monotonic() < deadline:
            second.step()  # joins the group: the first lets go of half the partitions while it lingers
        runner.join()
        assert not errors, errors
        assert second.stats.batches > 0
        first.run(until_idle_s=1.0)
        second.run(until_idle_s=1.0)
        stats = [first.stats, second.stats]
        assert sum(s.processed for s in stats) == len(events)
        assert sum(s.duplicates + s.dead_lettered for s in stats) == 0
    with open_store(settings) as store:
        rows = store.read_shown([f"u{k}" for k in range(8)])
    assert {u: row.shown for u, row in rows.items()} == expected_rows(events)


def test_claims_in_small_transactions_still_count_a_resent_impression_once(tmp_path: Path) -> None:
    settings = settings_at(tmp_path, 0)
    settings.speed.feedback.impressions_claims_per_txn = 3  # a poll's 12 claims in four transactions
    events = impressions(10)
    append(settings, [*events, events[1], events[8]])  # resent: the first in another transaction than its claim
    with ImpressionConsumer(settings) as consumer:
        consumer.run(until_idle_s=1.0)
        assert (consumer.stats.processed, consumer.stats.duplicates, consumer.stats.batches) == (10, 2, 1)
    with open_store(settings) as store:
        rows = store.read_shown([f"u{k}" for k in range(8)])
    assert {u: row.shown for u, row in rows.items()} == expected_rows(events)


def test_the_impressions_consumer_applies_its_batch_while_the_positive_paths_claims_file_is_locked(
    tmp_path: Path,
) -> None:
    """Issue 16: its claims live beside its rows (``shown.sqlite``), so the impressions consumer takes no lock the
    positive-event consumer's claims take (``claims.sqlite``), and a resent impression still counts once."""
    settings = settings_at(tmp_path, 0)
    settings.store.request_timeout_s = 1.0  # a claim that waited for the held lock would fail after this
    events = impressions(20)
    append(settings, events + events[:5])  # five resent
    with ImpressionConsumer(settings) as consumer:
        holder = sqlite3.connect(tmp_path / "store" / "claims.sqlite", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the positive-event consumer, mid-claim, never letting go
            while consumer.stats.processed + consumer.stats.duplicates < 25:
                assert consumer.step() > 0, consumer.stats.to_json()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (consumer.stats.processed, consumer.stats.duplicates) == (20, 5)
    with open_store(settings) as store:
        rows = store.read_shown([f"u{k}" for k in range(8)])
    assert {u: row.shown for u, row in rows.items()} == expected_rows(events)
