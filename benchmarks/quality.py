"""``quality``: the nightly model (default settings, and after ``batch tune``) against strong simple baselines on
warm users, and the fair replay's lambda / batch ratio, on MovieLens-100K split by time at 80%.

One run, one split (:mod:`benchmarks.offline`): our nightly job publishes a snapshot from the events before the
split into a temporary embedded store and each warm user's list is read back from it, as serving reads it;
then the tuner picks parameters on the newest 10% of the training window and the trainer is rerun with them.
The references are most-popular, item-kNN cosine (100 neighbours), EASE (lambda 100, 200, 500) and a small grid
of implicit ALS, all scored on the same warm users; intervals are paired bootstraps over users. The replay runs
every variant with fair filtering (:mod:`replay.protocol`) and reports the warm segment.

=========  ====================================================================
scale      replay and tuning
=========  ====================================================================
small      a seeded sample of 3000 replayed events scored; 12 tuning trials
medium     every replayed event scored; 40 tuning trials (or 300 s)
large      as medium
=========  ====================================================================

Goals: ``batch/popular`` >= 1.3, ``batch/best-baseline`` >= 0.95, ``lambda/batch`` >= 1.5 (warm users), replay
>= 2,000 events/s.

Example
-------
``python -m benchmarks quality --scale medium``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Goal, Result, Scale

K = 10
SIZES: dict[str, tuple[int | None, int, float]] = {  # scale -> (replay sample, tuning trials, tuning budget s)
    "small": (3000, 12, 120.0),
    "medium": (None, 40, 300.0),
    "large": (None, 40, 300.0),
}
ALS_GRID = [(f, r, a) for f in (64, 128) for r in (10.0, 50.0) for a in (1.0, 10.0)]
REPLAY_GOAL = 2000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", type=float, default=0.8, help="share of events before the split (default 0.8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the replay sample and the bootstrap")
    parser.add_argument("--cache-dir", default=None, help="where MovieLens-100K is cached ($LAMBDAREC_CACHE)")


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    from batch_layer.datasets import fetch_movielens_100k, import_dataset, write_log
    from benchmarks import offline
    from lambdarec.settings import Settings

    sample, trials, budget = SIZES[scale]
    settings = Settings.load()
    with tempfile.TemporaryDirectory(prefix="lambdarec-bench-quality-") as tmp:
        log = str(write_log(import_dataset("recbole", fetch_movielens_100k(args.cache_dir)), Path(tmp) / "ml.parquet"))
        split = offline.time_split(log, args.split)
        users = split.warm.size
        ours = offline.user_ndcg(_nightly_top(settings, log, split, Path(tmp) / "store"), split)
        tuned, tuned_params = _tuned(settings, split, trials, budget)
        refs = _baselines(split)
        best_name = max(refs, key=lambda n: refs[n].mean())
        pop = refs["most popular"]
        where = f"MovieLens-100K split at {args.split:.0%}, {users} warm users, NDCG@{K}"
        table = "; ".join(f"{n} {v.mean():.4f}" for n, v in refs.items())
        for name, values, ref_name, ref, goal in (
            ("batch/popular", ours, "most popular", pop, 1.3),
            ("batch/best-baseline", ours, best_name, refs[best_name], 0.95),
            ("batch-tuned/popular", tuned, "most popular", pop, 1.3),
            ("batch-tuned/best-baseline", tuned, best_name, refs[best_name], 0.95),
        ):
            _, lo, hi = offline.paired_ratio(values, ref, seed=args.seed)
            tuned_note = f"; tuned params {tuned_params}" if name.startswith("batch-tuned") else ""
            yield Result(
                bench="quality",
                metric=f"{name} warm ndcg@{K}",
                ours=float(values.mean()),
                reference=float(ref.mean()),
                unit=f"ndcg@{K}",
                scale=scale,
                note=f"vs {ref_name}; paired 95% CI [{lo:.3f}, {hi:.3f}]; {where}; baselines: {table}{tuned_note}",
                goal=Goal(ratio=goal),
            )
        yield from _replay(settings, log, args, sample, scale)


def _nightly_top(settings, log: str, split, store_dir: Path) -> np.ndarray:
    """Each warm user's top-K as the nightly job published it (default settings), read back from the store."""
    from batch_layer.job import run_batch
    from lambdarec.store import open_store

    work = settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": f"sqlite:///{store_dir.resolve()}"})}
    )
    as_of = datetime.fromtimestamp((split.split_ms - 1) / 1000, UTC)  # the events before the split
    result = run_batch(work, interactions=log, as_of=as_of, force=True, progress=False)
    version = result.manifest["version"]
    ids = split.data.user_ids[split.warm].tolist()
    with open_store(work) as store:
        rows = store.read_users(version, ids)
        their_items = np.asarray(store.read_array(version, "item_ids")).astype(str)
    index = {item: i for i, item in enumerate(split.data.item_ids.tolist())}
    top = np.full((len(ids), K), -1, dtype=np.int64)
    for j, user in enumerate(ids):
        row = rows[user]
        items = [index.get(str(their_items[c]), -1) for c in row.candidates[:K].tolist()]
        top[j, : len(items)] = items
    return top


def _tuned(settings, split, trials: int, budget: float) -> tuple[np.ndarray, dict]:
    """``batch tune`` on the training window, then the trainer with the best parameters."""
    from batch_layer.tune import apply_params, tune
    from benchmarks import offline

    result = tune(split.frame, settings.batch, trials=trials, budget_s=budget)
    batch = apply_params(settings.batch, result.best_params)
    return offline.user_ndcg(offline.ours_top(split, batch), split), result.best_params


def _baselines(split) -> dict[str, np.ndarray]:
    from benchmarks import offline

    out = {"most popular": offline.user_ndcg(offline.popular_top(split), split)}
    out["item-kNN cosine 100"] = offline.user_ndcg(offline.itemknn_top(split, 100), split)
    for lam in (100.0, 200.0, 500.0):
        out[f"EASE {lam:g}"] = offline.user_ndcg(offline.ease_top(split, lam), split)
    for f, r, a in ALS_GRID:
        out[f"implicit ALS f{f} reg{r:g} a{a:g}"] = offline.user_ndcg(offline.implicit_als_top(split, f, r, a), split)
    return out


def _replay(settings, log: str, args: argparse.Namespace, sample: int | None, scale: Scale) -> Iterator[Result]:
    from lambdarec.rank.merge import MergeWeights
    from replay.protocol import ReplayConfig, quantile_time, run_replay
    from replay.report import build_report
    from replay.variants import standard_variants

    cfg = ReplayConfig(
        log,
        split_at=quantile_time(log, settings, args.split),
        ks=(K,),
        sample=sample,
        seed=args.seed,
        progress=sys.stderr.isatty(),
    )
    t0 = time.perf_counter()
    run = run_replay(settings, cfg, standard_variants(MergeWeights.from_settings(settings.serving)))
    wall = time.perf_counter() - t0
    doc = build_report(run)
    key = f"ndcg@{K}"
    warm = doc["segments"]["warm"]
    ratio = doc["segment_ratios"]["warm"]["lambda/batch"]
    counts = doc["segment_events"]
    lo, hi = ratio["ci"][key]
    cold = doc["segment_ratios"]["cold"].get("lambda/batch", {}).get(key)
    yield Result(
        bench="quality",
        metric=f"lambda/batch warm {key}",
        ours=warm["lambda"][key],
        reference=warm["batch"][key],
        unit=key,
        scale=scale,
        goal=Goal(ratio=1.5),
        note=f"fair filtering; paired 95% CI [{lo:.3f}, {hi:.3f}]; warm {counts['warm']['events']} "
        f"events of {counts['warm']['users']} users; cold lambda/batch {cold if cold is None else round(cold, 3)} "
        f"on {counts['cold']['events']} events; all users lambda/batch {doc['ratios']['lambda/batch'][key]:.3f}",
    )
    seconds, cpu = run.timings_s["replay"], run.timings_s["replay_cpu"]
    yield Result(
        bench="quality",
        metric="replay events/s",
        ours=run.events_replayed / seconds,
        reference=REPLAY_GOAL,
        unit="events/s",
        scale=scale,
        goal=Goal(at_least=REPLAY_GOAL),
        note=f"reference is the goal (2,000 events/s), not a measurement; {run.events_replayed} events replayed in "
        f"{seconds:.1f} s ({cpu:.1f} s of CPU: {run.events_replayed / max(cpu, 1e-9):.0f} events per CPU second), "
        f"{doc['events_scored']} scored by 4 variants "
        f"({'every novel event' if sample is None else f'a sample of {sample}'}); one BLAS thread; "
        f"batch job {run.timings_s['batch']:.1f} s, whole run {wall:.1f} s",
    )
