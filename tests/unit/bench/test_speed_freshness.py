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
    # what the benchmark measured before: the same ids again, all skipped, so it timed skipping
    latencies, applied, _ = freshness(settings, event_lines(200, 50, 20, START + 300, 3, ids="tb"), 1_000, "thread")
    assert (len(latencies), applied) == (200, 0)
