"""The study behind the nightly model's defaults (docs/quality-study.md): a grid over ALS regularization, alpha
and factors on MovieLens-100K and on the synthetic generator, warm-user NDCG@10 (:mod:`benchmarks.offline`).

Three windows: MovieLens-100K split at 80% (test), MovieLens-100K trained on the first 60% and validated on
60-80% (an earlier window, to check that the choice does not overfit the test window), and a synthetic
clickstream split at 80%. Writes ``quality-study.json`` and two PNG figures into ``--out``.

Example
-------
``python -m benchmarks.quality_study --out docs/figures``
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

REGULARIZATION = (0.05, 1.0, 5.0, 20.0, 50.0, 100.0, 200.0)
ALPHA = (0.5, 2.0, 10.0)
FACTORS = (16, 32, 64, 128)
FACTOR_REGS = (0.05, 50.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_study", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="folder for the JSON and figures")
    parser.add_argument("--cache-dir", default=None, help="where MovieLens-100K is cached ($LAMBDAREC_CACHE)")
    args = parser.parse_args(argv)
    from batch_layer.datasets import fetch_movielens_100k, import_dataset, write_log
    from batch_layer.synth import SynthSpec, synthesize
    from benchmarks.offline import time_split

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lambdarec-study-") as tmp:
        ml = str(write_log(import_dataset("recbole", fetch_movielens_100k(args.cache_dir)), Path(tmp) / "ml.parquet"))
        synth = str(
            write_log(
                synthesize(SynthSpec(users=2000, items=1500, events=100_000, seed=42)).events, Path(tmp) / "s.parquet"
            )
        )
        windows = {
            "MovieLens-100K, test (train < 80%)": time_split(ml, 0.8),
            "MovieLens-100K, earlier (train < 60%, validate 60-80%)": time_split(ml, 0.6, until_fraction=0.8),
            "synthetic 2k users x 1.5k items, test (train < 80%)": time_split(synth, 0.8),
        }
        results = {name: _grid(split) for name, split in windows.items()}
    (args.out / "quality-study.json").write_text(json.dumps(results, indent=2) + "\n")
    _figures(results, args.out)
    for name, rows in results.items():
        best = max(rows, key=lambda r: r["ndcg@10"])
        default = next(r for r in rows if (r["factors"], r["regularization"], r["alpha"]) == (64, 50.0, 2.0))
        old = next(r for r in rows if (r["factors"], r["regularization"], r["alpha"]) == (64, 0.05, 2.0))
        print(f"{name}: old default {old['ndcg@10']:.4f}, new default {default['ndcg@10']:.4f}, best {best}")
    return 0


def _grid(split) -> list[dict]:
    from benchmarks.offline import ours_top, popular_top, user_ndcg
    from lambdarec.settings import BatchSettings

    rows = []
    pop = float(user_ndcg(popular_top(split), split).mean())
    points = [(64, r, a) for r in REGULARIZATION for a in ALPHA]
    points += [(f, r, 2.0) for f in FACTORS for r in FACTOR_REGS if (f, r, 2.0) not in points]
    for factors, reg, alpha in points:
        batch = BatchSettings(factors=factors, regularization=reg, alpha=alpha, device="cpu", threads=1)
        ndcg = float(user_ndcg(ours_top(split, batch), split).mean())
        rows.append(
            {"factors": factors, "regularization": reg, "alpha": alpha, "ndcg@10": round(ndcg, 5), "popular": pop}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _figures(results: dict[str, list[dict]], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6), dpi=110, layout="constrained")
    for n, (name, rows) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), n + 1)
        for alpha in ALPHA:
            pts = sorted(
                (r["regularization"], r["ndcg@10"]) for r in rows if r["factors"] == 64 and r["alpha"] == alpha
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"alpha {alpha:g}")
        ax.axhline(rows[0]["popular"], color="grey", linestyle="--", label="most popular")
        ax.axvline(50.0, color="C3", alpha=0.3, linewidth=6, label="new default")
        ax.set_xscale("log")
        ax.set_xlabel("ALS regularization (64 factors)")
        ax.set_ylabel("warm-user NDCG@10")
        ax.set_title(name, fontsize=8)
        ax.grid(alpha=0.3)
        if n == 0:
            ax.legend(frameon=False, fontsize=7)
    fig.savefig(out / "quality-study-regularization.png")
    fig = Figure(figsize=(12, 3.2), dpi=110, layout="constrained")
    for n, (name, rows) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), n + 1)
        for reg in FACTOR_REGS:
            pts = sorted((r["factors"], r["ndcg@10"]) for r in rows if r["regularization"] == reg and r["alpha"] == 2.0)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"regularization {reg:g}")
        ax.axhline(rows[0]["popular"], color="grey", linestyle="--", label="most popular")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("factors (alpha 2)")
        ax.set_ylabel("warm-user NDCG@10")
        ax.set_title(name, fontsize=8)
        ax.grid(alpha=0.3)
        if n == 0:
            ax.legend(frameon=False, fontsize=7)
    fig.savefig(out / "quality-study-factors.png")


if __name__ == "__main__":
    raise SystemExit(main())
