"""The speed consumer's memory is bounded by settings, not by the users and items it has seen (issue 12,
finding 12). The 100k vs 1M events RSS figure is ``python -m benchmarks speed_memory --scale medium``."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

from lambdarec.eventlog import open_log
from lambdarec.settings import Settings
from speed_layer.consumer import SpeedConsumer

T0 = 1_706_745_600.0  # 2024-02-01


def append_new_users(settings: Settings, start: int, n: int) -> None:
    lines = [
        json.dumps(
            {
                "event_id": f"m{k}",
                "user_id": f"user-{k}",
                "item_id": f"item-{k}",
                "event_type": "view",
                "timestamp": T0 + k,
            }
        ).encode()
        for k in range(start, start + n)
    ]
    with open_log(settings) as log:
        log.append(lines, keys=[f"user-{k}" for k in range(start, start + n)])


def test_python_memory_stays_flat_while_every_event_names_a_new_user_and_item(tmp_path: Path) -> None:
    settings = Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp_path}/store"},
            "log": {"url": f"sqlite:///{tmp_path}/events"},
            "speed": {"poll_max_records": 1000},
        }
    )
    with SpeedConsumer(settings) as consumer:
        append_new_users(settings, 0, 2_000)
        while consumer.stats.processed < 2_000:
            consumer.step()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for start in range(2_000, 14_000, 4_000):
                append_new_users(settings, start, 4_000)
                while consumer.stats.processed < start + 4_000:
                    consumer.step()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    stats = consumer.stats.to_json()
    assert stats["processed"] == 14_000 and all(isinstance(v, int) for v in stats.values())
    assert grown < 256 * 1024, f"{grown / 1024:.0f} KiB kept after 12,000 events of new users and items"
