"""``memory``: peak resident memory of the nightly job at 1x and 10x users, serving's memory per million users,
and the speed consumer's memory after N events.

* **Nightly.** The whole job (load, gate, fit, candidates, write, publish into SQLite) runs in a fresh process at
  ``U`` and ``10 U`` users, on the same number of events and items (so what grows is what grows with users). The
  job must hold the event frame, the interaction matrix and the factors; candidates must be streamed block by
  block. So the memory beyond those arrays (peak RSS minus their bytes) must not grow with users: ours is
  that overhead at 10x, the reference the same at 1x, goal ratio >= 1/1.2. Held candidates (``K`` items and scores
  per user) would add ``10 U * K * 8`` bytes and fail it.
* **Serving.** The app (one worker, in-process client) loads each snapshot and answers a sample of users: its
  RSS at 10x users against 1x (per-user rows stay in the store, so it must be flat), and per million users.
* **Speed consumer.** :mod:`benchmarks.speed_memory` in a fresh process: RSS after N events vs after N/10
  (``small``: 200k events, else 1M), every event a new user and item.

Example
-------
``python -m benchmarks memory --scale small``
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Goal, Result, Scale
from benchmarks.peak_rss import measure, status_kib

# scale -> (users at 1x, items, events, the speed_memory scale: small 200k events, medium 1M)
SIZES: dict[str, tuple[int, int, int, str]] = {
    "small": (5_000, 2_000, 300_000, "small"),
    "medium": (20_000, 10_000, 2_000_000, "medium"),
    "large": (100_000, 20_000, 10_000_000, "medium"),
}
AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
SERVED_USERS = 2_000  # users asked for recommendations before serving's RSS is read
MIB = 1 << 20
GOAL_GROWTH = 1 / 1.2  # 10x the users: the nightly's memory beyond its arrays, and serving's, grow <= 1.2x


def _overrides(store_dir: str) -> dict:
    return {"store": {"url": f"sqlite:///{store_dir}"}, "batch": {"top_k": 100}}


def nightly_job(store_dir: str, log_path: str) -> dict:
    """The nightly job on ``log_path`` into a SQLite store (runs in the measured child)."""
    from batch_layer.job import run_batch
    from lambdarec.logs import configure_logging
    from lambdarec.settings import Settings

    configure_logging("WARNING")
    settings = Settings.load(overrides=_overrides(store_dir))
    manifest = run_batch(settings, interactions=log_path, as_of=AS_OF, progress=False).manifest
    return {"counts": manifest["counts"], "timings_s": manifest["timings_s"]}


def held_arrays_mib(store_dir: str, log_path: str) -> dict[str, float]:
    """Bytes of what the job must hold at once, in MiB: the event frame it reads, the CSR matrix, the factors and
    one block of candidates (items int32 and scores float32)."""
    from batch_layer.interactions import read_interactions
    from batch_layer.matrix import build_matrix
    from lambdarec.settings import Settings

    batch = Settings.load(overrides=_overrides(store_dir)).batch
    frame, _ = read_interactions(log_path, batch, as_of=AS_OF)
    data = build_matrix(frame)
    m = data.matrix
    users, items = m.shape
    held = {
        "frame": frame.estimated_size() / MIB,
        "matrix": (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / MIB,
        "factors": (users + items) * batch.train.factors * 4 / MIB,
        "candidate_block": min(users, batch.user_block) * batch.top_k * 8 / MIB,
    }
    del frame, data, m
    gc.collect()
    return held


def serving_rss(store_dir: str, user_ids: list[str]) -> float:
    """RSS (MiB) of the serving app after it loaded the current snapshot and answered ``user_ids``."""
    import time

    from fastapi.testclient import TestClient

    from lambdarec.logs import configure_logging
    from lambdarec.rank import kernel
    from lambdarec.settings import Settings
    from serving_layer.app import create_app

    configure_logging("WARNING")
    app = create_app(Settings.load(overrides=_overrides(store_dir)))
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while app.state.service.models.model is None:
            if time.monotonic() > deadline:
                raise RuntimeError("serving did not load the snapshot within 120 s")
            time.sleep(0.05)
        kernel.wait(120)  # the merge kernel (numba) loads in the background: measure the process it settles on
        for uid in user_ids:
            reply = client.get(f"/v1/users/{uid}/recommendations")
            if reply.status_code != 200:
                raise RuntimeError(f"GET recommendations for {uid}: HTTP {reply.status_code} {reply.text[:200]}")
        gc.collect()
        return status_kib("VmRSS") / 1024


def consumer_results(scale: str) -> list[Result]:
    """:mod:`benchmarks.speed_memory` at ``scale``, its lines renamed into this benchmark."""
    from benchmarks import speed_memory

    results = speed_memory.run(scale, argparse.Namespace())  # type: ignore[arg-type]
    return [dataclasses.replace(r, bench="memory", metric=f"consumer_{r.metric}") for r in results]


def _synth_log(path: Path, users: int, items: int, events: int) -> list[str]:
    """Write a synthetic log; return a sample of its user ids."""
    from batch_layer.synth import SynthSpec, synthesize

    frame = synthesize(SynthSpec(users=users, items=items, events=events, seed=7)).events
    frame.write_parquet(path)
    sample = frame["user_id"].unique().sort().head(SERVED_USERS).to_list()
    return [str(u) for u in sample]


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    users, items, events, consumer_scale = SIZES[scale]
    peaks: dict[int, float] = {}
    overhead: dict[int, float] = {}
    served: dict[int, float] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 10):
            n = users * factor
            log_path = Path(tmp) / f"log{factor}.parquet"
            sample = _synth_log(log_path, n, items, events)
            store_dir = f"{tmp}/store{factor}"
            job, rss = measure(nightly_job, store_dir, str(log_path))
            held = held_arrays_mib(store_dir, str(log_path))
            peaks[factor] = rss.peak_mib
            overhead[factor] = rss.peak_mib - sum(held.values())
            arrays = ", ".join(f"{k} {v:.0f}" for k, v in held.items())
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in job["timings_s"].items())
            notes.append(
                f"{factor}x: {job['counts']['users']:,} users, {events:,} events, peak {rss.peak_mib:.0f} MiB, "
                f"arrays MiB: {arrays}; {stages}"
            )
            served[factor], _ = measure(serving_rss, store_dir, sample)
    yield Result(
        "memory",
        "nightly_peak_beyond_arrays_mib_10x_vs_1x",
        overhead[10],
        overhead[1],
        "MiB",
        scale,
        higher_is_better=False,
        note=f"peak RSS 1x {peaks[1]:.0f} MiB, 10x {peaks[10]:.0f} MiB; " + "; ".join(notes) + "; the goal: growth "
        "<= 1.2x",
        goal=Goal(ratio=GOAL_GROWTH),
    )
    per_million = (served[10] - served[1]) / (9 * users) * 1e6
    yield Result(
        "memory",
        "serving_rss_mib_10x_vs_1x_users",
        served[10],
        served[1],
        "MiB",
        scale,
        higher_is_better=False,
        note=f"serving RSS {served[1]:.0f} MiB at {users:,} users, {served[10]:.0f} MiB at {10 * users:,}: "
        f"{per_million:+.1f} MiB per million users (per-user rows are read from the store, never held); the goal: "
        "flat (growth <= 1.2x)",
        goal=Goal(ratio=GOAL_GROWTH),
    )
    consumer, _ = measure(consumer_results, consumer_scale)
    yield from consumer
