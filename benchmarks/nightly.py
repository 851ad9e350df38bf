"""``nightly``: the whole batch job, load to flip, vs the sum of its parts measured alone on the same data.

Parts: load (read and clean the log), fit (train on everything), top-K (all users' candidates, seen
excluded), neighbours and popularity (the other arrays a snapshot carries), write (the same rows through the
store). Ours runs with the quality gate off, so both sides do the same work; a second line reports the job
with the gate on (it trains once more on the older part of the window).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import nightly_large
from benchmarks.common import Result, Scale

SIZES = {
    "small": (20_000, 5_000, 1_000_000),
    "medium": (100_000, 20_000, 5_000_000),
    "large": (1_000_000, 100_000, 50_000_000),  # run by benchmarks.nightly_large
}
AS_OF = datetime(2024, 2, 1, tzinfo=UTC)


def _settings(tmp: str, name: str, gate: bool):  # type: ignore[no-untyped-def]
    from lambdarec.settings import Settings

    return Settings.load(
        overrides={
            "store": {"url": f"sqlite:///{tmp}/{name}"},
            "batch": {"gate": {"holdout_fraction": 0.05 if gate else 0.0}, "top_k": 100},
        }
    )


def _parts(log: Path, tmp: str) -> dict[str, float]:
    """Each part of the job on its own, timed."""
    from batch_layer.candidates import iter_candidates
    from batch_layer.interactions import read_interactions
    from batch_layer.matrix import build_matrix, index_of
    from batch_layer.neighbours import item_neighbours
    from batch_layer.popularity import popularity
    from batch_layer.rows import user_rows
    from batch_layer.train import train
    from lambdarec.store import open_store

    s = _settings(tmp, "parts", gate=False)
    b = s.batch
    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    frame, _ = read_interactions(str(log), b, as_of=AS_OF)
    data = build_matrix(frame)
    parts["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    factors = train(data.matrix, b, show_progress=False)
    parts["fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    u, y = factors.user_factors, factors.item_factors
    blocks = list(iter_candidates(u, y, data.matrix, b.top_k, b.user_block, threads=b.threads))
    parts["topk"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    item_neighbours(y, b.neighbours, block=b.user_block, threads=b.threads)
    parts["neighbours"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    popularity(
        item_index=index_of(frame["item_id"], data.item_ids),
        ts=frame["ts"].to_numpy(),
        weight=frame["weight"].to_numpy(),
        n_items=len(data.item_ids),
        recent_days=b.popularity_recent_days,
    )
    parts["popularity"] = time.perf_counter() - t0
    with open_store(s) as store:
        version = store.begin_snapshot({})
        t0 = time.perf_counter()
        for block in blocks:
            store.write_users(version, user_rows(data.user_ids, data.matrix, block), part=str(int(block.users[0])))
        parts["write"] = time.perf_counter() - t0
    return parts


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--stores", choices=("sqlite", "cassandra", "both"), default="both", help="large: stores")
    parser.add_argument("--cassandra", default=None, help="large: host:port (default $LAMBDAREC_TEST_CASSANDRA)")
    parser.add_argument("--log", default=None, help="large: a synthetic log parquet to reuse")
    parser.add_argument("--fraction", type=float, default=1.0, help="large: run this fraction of every size")
    parser.add_argument("--no-gate", action="store_true", help="large: without the quality gate's second training")


def run(scale: Scale, args) -> Iterator[Result]:  # type: ignore[no-untyped-def]
    if scale == "large":
        yield from nightly_large.run(SIZES[scale], scale, args)
        return
    from batch_layer.job import run_batch
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.logs import configure_logging

    configure_logging("WARNING")
    users, items, events = SIZES[scale]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.parquet"
        synthesize(SynthSpec(users=users, items=items, events=events, seed=11)).events.write_parquet(log)
        t0 = time.perf_counter()
        result = run_batch(_settings(tmp, "ours", gate=False), interactions=str(log), as_of=AS_OF, progress=False)
        ours = time.perf_counter() - t0
        parts = _parts(log, tmp)
        reference = sum(parts.values())
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in parts.items())
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.manifest["timings_s"].items())
        yield Result(
            "nightly",
            "job_seconds_vs_sum_of_parts",
            ours,
            reference,
            "s",
            scale,
            higher_is_better=False,
            note=f"{events} events, {users} users, {items} items; parts: {detail}; job stages: {stages}",
        )
        t0 = time.perf_counter()
        run_batch(_settings(tmp, "gated", gate=True), interactions=str(log), as_of=AS_OF, progress=False)
        gated = time.perf_counter() - t0
        yield Result(
            "nightly",
            "job_with_gate_seconds_vs_sum_of_parts",
            gated,
            reference,
            "s",
            scale,
            higher_is_better=False,
            note="the gate trains a second model on the older 95% of the window",
        )
