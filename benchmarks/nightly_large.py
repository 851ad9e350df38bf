"""``nightly --scale large``: the whole nightly job at 1M users x 100k items x 50M events, into SQLite and into
Cassandra, each in a fresh process: wall time per stage and peak RSS.

At this size the "sum of the parts measured alone" reference of the smaller scales would double an hour-long
run, so each store's job is reported against what bounds it instead: its wall time against the sum of its own
stages (the orchestration overhead, goal <= 15%), its peak RSS against the arrays it must hold (the CSR
interaction matrix, the factors and one block of candidates; the rest is the event frame and the load's
transient copies), and Cassandra's wall time against SQLite's. The synthetic log is written once by a child
process (``--log`` reuses one). Cassandra runs where ``--cassandra host:port`` or ``LAMBDAREC_TEST_CASSANDRA``
names one, in a fresh keyspace that is dropped afterwards. ``--fraction 0.1`` runs a tenth of every size first;
``--no-gate`` leaves out the quality gate's second training (about 1.5x the fit's time at 0.1).
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Goal, Result, Scale
from benchmarks.peak_rss import measure
from lambdarec.settings import BatchSettings

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
MIB = 1 << 20


def write_log(path: str, users: int, items: int, events: int) -> int:
    """Synthesise the log into ``path`` (runs in a child process); its number of events."""
    from batch_layer.synth import SynthSpec, synthesize

    frame = synthesize(SynthSpec(users=users, items=items, events=events, seed=11)).events
    frame.write_parquet(path)
    return frame.height


def job(overrides: dict, log_path: str) -> dict:
    """The nightly job (runs in the measured child); its counts and stage timings."""
    from batch_layer.job import run_batch
    from lambdarec.logs import configure_logging
    from lambdarec.settings import Settings

    configure_logging("INFO")  # batch.stage lines on stderr: a run stopped early still shows how far it got
    settings = Settings.load(overrides=overrides)
    t0 = time.perf_counter()
    manifest = run_batch(settings, interactions=log_path, as_of=AS_OF, progress=False).manifest
    return {"counts": manifest["counts"], "timings_s": manifest["timings_s"], "wall_s": time.perf_counter() - t0}


def keyspace(url: str, create: bool) -> None:
    """Create or drop the benchmark's keyspace (runs in a child: no driver threads left in this process)."""
    from lambdarec.settings import StoreSettings
    from lambdarec.store.cassandra import CassandraStore

    store = CassandraStore(StoreSettings(url=url))
    try:
        store.init_schema() if create else store.drop_schema()
    finally:
        store.close()


def _held_mib(counts: dict, factors: int, top_k: int, block: int) -> float:
    """The CSR matrix (float32 data, int32 indices, int64 indptr), both factor arrays, one candidate block."""
    users, items, pairs = counts["users"], counts["items"], counts["pairs"]
    return (pairs * 8 + (users + 1) * 8 + (users + items) * factors * 4 + min(users, block) * top_k * 8) / MIB


def run(sizes: tuple[int, int, int], scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    fraction = getattr(args, "fraction", 1.0)
    users, items, events = (max(1, int(n * fraction)) for n in sizes)
    cassandra = getattr(args, "cassandra", None) or os.environ.get("LAMBDAREC_TEST_CASSANDRA")
    stores = [s for s in ("sqlite", "cassandra") if getattr(args, "stores", "both") in (s, "both")]
    if "cassandra" in stores and not cassandra:
        raise SystemExit("nightly --scale large on Cassandra needs --cassandra host:port or LAMBDAREC_TEST_CASSANDRA")
    with tempfile.TemporaryDirectory() as tmp:
        log_path = getattr(args, "log", None)
        synth_note = "given log"
        if not log_path:
            log_path = f"{tmp}/log.parquet"
            t0 = time.perf_counter()
            _, synth = measure(write_log, log_path, users, items, events)
            synth_note = f"log synthesised in {time.perf_counter() - t0:.0f} s, peak {synth.peak_mib:.0f} MiB"
        size = f"{Path(log_path).stat().st_size / MIB:.0f} MiB parquet"
        walls: dict[str, float] = {}
        for store in stores:
            name = f"lambdarec_large_{secrets.token_hex(4)}"
            url = f"sqlite:///{tmp}/store" if store == "sqlite" else f"cassandra://{cassandra}/{name}"
            overrides: dict = {"store": {"url": url}, "batch": {"top_k": 100}}
            if getattr(args, "no_gate", False):
                overrides["batch"]["gate"] = {"holdout_fraction": 0.0}
            try:
                if store == "cassandra":
                    measure(keyspace, url, True)
                out, rss = measure(job, overrides, log_path)
            finally:
                if store == "cassandra":
                    measure(keyspace, url, False)
            walls[store] = out["wall_s"]
            counts, stages = out["counts"], out["timings_s"]
            shape = f"{counts['users']:,} users x {counts['items']:,} items, {counts['interactions']:,} events"
            stage_text = ", ".join(f"{k} {v:.1f}s" for k, v in stages.items())
            note = f"{store}: {shape} ({size}; {synth_note}); stages: {stage_text}"
            yield Result(
                "nightly", f"large_job_seconds_vs_its_stages_{store}", out["wall_s"], sum(stages.values()), "s",
                scale, higher_is_better=False, note=note + "; the goal: overhead <= 15%", goal=Goal(ratio=0.87),
            )  # fmt: skip
            batch = BatchSettings()
            held = _held_mib(counts, batch.train.factors, 100, batch.user_block)
            yield Result(
                "nightly", f"large_job_peak_rss_mib_vs_held_arrays_{store}", rss.peak_mib, held, "MiB", scale,
                higher_is_better=False, note=f"{store}: peak RSS of the job's process; reference: CSR matrix, "
                "factors and one candidate block (the event frame and the load's copies are the rest)",
            )  # fmt: skip
        if len(walls) == 2:
            yield Result(
                "nightly", "large_job_seconds_cassandra_vs_sqlite", walls["cassandra"], walls["sqlite"], "s", scale,
                higher_is_better=False, note="the whole job into Cassandra vs into SQLite, same log and settings",
            )  # fmt: skip
