"""The speed benchmark's freshness phase times events being applied: its stream carries event ids of its own, and
the phase says how many were applied, since events under ids the store has seen are skipped as repeats."""

from __future__ import annotations

from pathlib import Path

from benchmarks.speed import event_lines, freshness
from benchmarks.speed_backends import fill
from lambdarec.settings import Settings
from speed_layer.consumer import SpeedConsumer

START = 1_706_745_660.0  # 2024-02-01 00:01


def test_the_freshness_stream_is_applied_not_skipped_as_repeats(tmp_path: Path) -> None:
    settings = Settings.load(
        overrides={"store": {"url": f"sqlite:///{tmp_path}/store"}, "log": {"url": f"sqlite:///{tmp_path}/log"}}
    )
    throughput = event_lines(300, 50, 20, START, 2, ids="tb")
    with SpeedConsumer(settings) as consumer:  # the throughput phase, as the benchmark runs it first
        fill(settings, throughput, 3)
        while consumer.stats.processed < len(throughput):
            consumer.step()
    latencies, applied, stages = freshness(
        settings, event_lines(200, 50, 20, START + 300, 3, ids="tf"), 1_000, "process"
    )
    assert (len(latencies), applied) == (200, 200)
    assert "append_to_poll p50" in stages and "written_to_committed p50" in stages  # where the latency went
    # what the benchmark measured before: the same events again (ids and users), all skipped, so it timed skipping
    latencies, applied, _ = freshness(settings, throughput[:200], 1_000, "thread")
    assert (len(latencies), applied) == (200, 0)


def test_freshness_with_two_consumer_processes_times_every_event_once(tmp_path: Path) -> None:
    """The group phase (one consumer process per partition, as deployments run them) reports one latency per event
    appended, each from its append to its state being written: none lost between the processes, none twice."""
    from benchmarks import speed_backends as sb
    from benchmarks.speed_group import group_freshness

    run = sb.overrides(f"sqlite:///{tmp_path}/store", sb.log_overrides("sqlite", tmp_path, "group", None))
    stream = event_lines(300, 50, 20, START, 3, ids="tg")
    latencies = group_freshness(run, stream, 1_000, members=2, partitions=2)
    assert len(latencies) == 300
    assert all(0.0 < s < 60.0 for s in latencies)
