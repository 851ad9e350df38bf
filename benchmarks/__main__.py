"""``python -m benchmarks NAME [--scale small|medium|large] [--json] [--check]``.

Each benchmark prints one JSON object per result line as it goes, then a human table (suppressed by --json) with
each figure's goal and whether it was met, and a line summing the goals up. Exit status: 0, or 1 with ``--check``
when a goal was not met (the verdict then also goes to stderr), 3 for a benchmark not built.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks.common import SCALES, Result, table, verdict

# name -> (module, what it compares). A benchmark module exposes ``add_arguments(parser)`` (optional) and
# ``run(scale, args) -> Iterator[Result]``.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "topk": ("benchmarks.topk", "all-users top-K vs implicit's recommend, and vs the machine's sgemm rate"),
    "publish": ("benchmarks.publish", "store writes vs the backend's own bulk API"),
    "nightly": ("benchmarks.nightly", "whole batch job vs the sum of its parts"),
    "speed": ("benchmarks.speed", "speed layer events/s vs a bare kafka-python poll loop; freshness p99"),
    "serve": ("benchmarks.serve", "recommendations QPS and p99 vs a hello-JSON endpoint"),
    "replay": ("benchmarks.replay", "lambda NDCG@10 vs batch-only and popularity"),
    "speed_memory": ("benchmarks.speed_memory", "speed consumer RSS after N events vs after N/10 (flat)"),
    "quality": ("benchmarks.quality", "nightly model vs popular, item-kNN, EASE, ALS grid; fair replay; events/s"),
    "impressions": ("benchmarks.impressions", "speed layer positive events/s with 10x impressions vs alone"),
    "archive": ("benchmarks.archive", "archiver events/s vs bare poll + write_deltalake; lake read vs one parquet"),
    "gpu": ("benchmarks.gpu", "torch MF training and FAISS/torch GPU top-K vs the GPU's FP32 peak (CUDA only)"),
    "memory": ("benchmarks.memory", "nightly peak RSS 1x vs 10x users beyond its arrays; serving and consumer RSS"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--scale", choices=SCALES, default="small", help="data size (default small)")
    parser.add_argument("--json", action="store_true", help="print only the JSON lines")
    parser.add_argument("--check", action="store_true", help="exit 1 when a figure misses its goal")
    known, _ = parser.parse_known_args(argv)
    module_name, _ = BENCHMARKS[known.name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"benchmark {known.name!r} is not built yet ({module_name} does not exist)", file=sys.stderr)
        return 3
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    results: list[Result] = []
    for result in module.run(args.scale, args):
        print(result.to_json(), flush=True)
        results.append(result)
    if not args.json:
        print("\n" + table(results))
    if args.check and any(r.met is False for r in results):
        print(verdict(results), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
