"""``speed_memory``: the speed consumer's resident memory after N events applied vs after N/10.

Every event names a new user and a new item, the worst case for anything that remembers ids. Memory must be
bounded by settings, not by users or events: the ratio (RSS at N/10 over RSS at N) should stay >= 0.9. Embedded
backends (SQLite log and store) at the default settings (``store.sqlite.fresh_mmap_mb = 0``). A separate process
appends the events to the log before the consumer starts, so the consumer's heap holds only what the consumer
allocates (a producer in the same process leaves its own churn in pymalloc's arenas). Before each measure the
heap's free pages go back to the system (``gc.collect``, glibc ``malloc_trim``), so RSS shows live memory.
Reported, from ``/proc/self/status``: the whole RSS; its anonymous part (the process's own memory: bounded by
``speed.history_cache_users``, ``speed.poll_max_records`` and SQLite's page caches, whose size
``sqlite_heap_mib`` reports); its file-backed part (the libraries' code, and the SQLite store's memory-mapped
pages, which grow with a file up to ``store.sqlite.mmap_mb`` for the snapshots file and
``store.sqlite.fresh_mmap_mb`` (default 0) for the fresh-state file, the one that grows with users; the kernel can
drop them at any time; a Cassandra store has none).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Goal, Result, Scale

SIZES = {"small": 200_000, "medium": 1_000_000, "large": 3_000_000}  # events applied at the second measure
CHUNK = 50_000
GOAL_FLAT = 0.9  # RSS at N/10 events over RSS at N


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _sqlite_heap_kib() -> int:
    """Bytes SQLite's allocator holds now (page caches, statements), in KiB; 0 where the library is not shared."""
    name = ctypes.util.find_library("sqlite3")
    if not name:
        return 0
    used = ctypes.CDLL(name).sqlite3_memory_used
    used.restype = ctypes.c_int64
    return used() // 1024


def _release_free_heap() -> None:
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)  # glibc only
        if trim is not None:
            trim(0)


def _events(start: int, n: int, t0: float) -> list[bytes]:
    return [
        json.dumps(
            {
                "event_id": f"m{k}",
                "user_id": f"user-{k}",
                "item_id": f"item-{k % 200_000}-{k // 200_000}",
                "event_type": "view",
                "timestamp": t0 + k * 0.001,
            }
        ).encode()
        for k in range(start, start + n)
    ]


def _produce(settings_overrides: dict, total: int, chunk: int, t0: float) -> None:
    """Append ``total`` events to the log in chunks (runs in its own process)."""
    from lambdarec.eventlog import open_log
    from lambdarec.settings import Settings

    with open_log(Settings.load(overrides=settings_overrides)) as log:
        log.ensure_topic()
        for start in range(0, total, chunk):
            log.append(_events(start, chunk, t0), keys=[f"user-{k}" for k in range(start, start + chunk)])


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    from batch_layer.job import run_batch
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.logs import configure_logging
    from lambdarec.settings import Settings
    from speed_layer.consumer import SpeedConsumer

    configure_logging("WARNING")
    total = SIZES[scale]
    first = total // 10
    chunk = min(CHUNK, first)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "store": {"url": f"sqlite:///{tmp}/store"},
            "log": {"url": f"sqlite:///{tmp}/events"},
            "batch": {"train": {"iterations": 3, "factors": 16}, "top_k": 20},
        }
        settings = Settings.load(overrides=overrides)
        log_path = Path(tmp) / "log.parquet"
        synthesize(SynthSpec(users=2_000, items=1_000, events=40_000, seed=1)).events.write_parquet(log_path)
        as_of = datetime(2024, 2, 1, tzinfo=UTC)
        run_batch(settings, interactions=str(log_path), as_of=as_of, progress=False)
        t0 = as_of.timestamp() + 60
        producer = multiprocessing.get_context("spawn").Process(target=_produce, args=(overrides, total, chunk, t0))
        producer.start()
        producer.join()
        if producer.exitcode != 0:
            raise RuntimeError(f"the producer process failed (exit {producer.exitcode})")
        measured: dict[int, tuple[int, int, int, int]] = {}
        started = time.perf_counter()
        with SpeedConsumer(settings) as consumer:
            for target in (first, total):
                while consumer.stats.processed < target:
                    consumer.step()
                _release_free_heap()
                measured[target] = (
                    _status_kib("VmRSS"),
                    _status_kib("RssAnon"),
                    _status_kib("RssFile"),
                    _sqlite_heap_kib(),
                )
        seconds = time.perf_counter() - started
        speed, store = settings.speed, settings.store
        bounds = {
            "rss_mib": "the sum of the two below",
            "rss_anon_mib": f"speed.history_cache_users={speed.history_cache_users}, "
            f"speed.poll_max_records={speed.poll_max_records}, SQLite page cache",
            "sqlite_heap_mib": "part of the anonymous memory: SQLite's page cache, 2 MiB per connection (its "
            "default cache_size)",
            "rss_file_mib": f"store.sqlite.mmap_mb={store.sqlite.mmap_mb} (snapshots file), "
            f"store.sqlite.fresh_mmap_mb={store.sqlite.fresh_mmap_mb} (fresh-state file), the libraries' code",
        }
        note = f"{first:,} vs {total:,} events, each a new user and item; {total / seconds:,.0f} events/s; bounded by "
        for n, metric in enumerate(("rss_mib", "rss_anon_mib", "rss_file_mib", "sqlite_heap_mib")):
            ours, reference = measured[total][n] / 1024, measured[first][n] / 1024
            goal = Goal(ratio=GOAL_FLAT) if metric == "rss_mib" else None  # its parts are reported, not judged
            yield Result("speed_memory", metric, ours, reference, "MiB", scale, False, note + bounds[metric], goal)
