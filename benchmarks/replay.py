"""``replay``: quality of the full lambda path (batch + speed + session re-rank) against batch-only and popularity.

MovieLens-100K (fetched at run time, see :func:`batch_layer.datasets.fetch_movielens_100k`) is split by time at
the 80th percentile of its events; the batch job trains on the first 80%, and the last 20% are replayed through
the serving code with every variant scoring the same events (:mod:`replay.protocol`). The figures are NDCG@10
ratios with a paired bootstrap interval over users; the goal is ``lambda / batch >= 1.15``.

=========  ============================================================
scale      events scored
=========  ============================================================
small      a seeded sample of 3000 of the replayed events
medium     every replayed event (the user's first touch of the item)
large      every replayed event, with the batch job re-run every day
=========  ============================================================

Example
-------
``python -m benchmarks replay --scale small`` ; ``--split 0.7 --seed 3`` to vary the split and the sample.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Goal, Result, Scale

K = 10
GOAL = 1.15
# scale -> (events sampled, rebatch period in seconds); None samples nothing / never rebatches
SIZES: dict[str, tuple[int | None, float | None]] = {
    "small": (3000, None),
    "medium": (None, None),
    "large": (None, 86400.0),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", type=float, default=0.8, help="share of events before the split (default 0.8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the event sample and the bootstrap")
    parser.add_argument("--sample", type=int, default=None, help="events scored (default: by scale)")
    parser.add_argument("--cache-dir", default=None, help="where MovieLens-100K is cached ($LAMBDAREC_CACHE)")


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    """Replay MovieLens-100K once with all four variants and yield lambda's ratios to batch, popular and batch+speed."""
    from batch_layer.datasets import fetch_movielens_100k, import_dataset, write_log
    from lambdarec.rank.merge import MergeWeights
    from lambdarec.settings import Settings
    from replay.protocol import ReplayConfig, quantile_time, run_replay
    from replay.report import build_report
    from replay.variants import standard_variants

    sample, rebatch = SIZES[scale]
    sample = getattr(args, "sample", None) or sample
    settings = Settings.load()
    with tempfile.TemporaryDirectory(prefix="lambdarec-bench-replay-") as tmp:
        log = str(write_log(import_dataset("recbole", fetch_movielens_100k(args.cache_dir)), Path(tmp) / "ml.parquet"))
        cfg = ReplayConfig(
            log,
            split_at=quantile_time(log, settings, args.split),
            ks=(K,),
            sample=sample,
            seed=args.seed,
            rebatch_every_s=rebatch,
            progress=sys.stderr.isatty(),
        )
        doc = build_report(run_replay(settings, cfg, standard_variants(MergeWeights.from_settings(settings.serving))))
    key = f"ndcg@{K}"
    v = doc["variants"]
    context = (
        f"MovieLens-100K split at {args.split:.0%} ({doc['split_at'][:10]}); {doc['events_scored']} events of "
        f"{doc['users']} users scored; replay {doc['timings_s']['replay']:.1f}s, batch {doc['timings_s']['batch']:.1f}s"
    )
    for base, what in (("batch", "vs the nightly alone"), ("popular", "floor"), ("batch+speed", "session + trending")):
        lo, hi = doc["ratios"][f"lambda/{base}"]["ci"][key]
        cis = f"lambda {v['lambda'][key]:.4f} {_ci(v['lambda'], key)}, {base} {v[base][key]:.4f} {_ci(v[base], key)}"
        yield Result(
            bench="replay",
            metric=f"{key} lambda / {base}",
            ours=v["lambda"][key],
            reference=v[base][key],
            unit=key,
            scale=scale,
            note=f"{what}; ratio 95% CI [{lo:.3f}, {hi:.3f}]; {cis}; {context}",
            goal=Goal(ratio=GOAL) if base == "batch" else None,
        )


def _ci(m: dict, key: str) -> str:
    lo, hi = m["ci"][key]
    return f"[{lo:.4f}, {hi:.4f}]"
