"""``serve``: QPS and p99 of ``GET /v1/users/{id}/recommendations`` (known users, session re-rank) against a
hello-JSON FastAPI endpoint on the same uvicorn settings, machine and load generator; and the production path:
the same requests served from Cassandra (state written through Kafka) against serving from SQLite.

Every server runs as a separate process pinned to one CPU, the load generator to another (when the process may
use two or more). Max QPS: a closed loop of ``--connections`` keep-alive connections (``wrk`` when installed,
else a Python closed loop), counting the lists answered degraded. p99: an open loop at half of our max QPS, the
same rate for ours and its reference: vegeta when installed (``make bench-tools``), else a Python open loop;
``--open-loop vegeta|python`` picks one (``benchmarks/serve_latency.py`` says how each times a request; neither
lets a stalled server hide its queue). Servers are measured alternately (A-B-B-A, best of two each).

Two workloads for ours: ``PATHS`` request URLs cycled (each a user drawn from all the snapshot's users, with three
random session items; a URL comes back every ``PATHS`` requests, so serving's answer cache answers the repeats
that nothing changed in between), and one where no URL is ever sent twice (new session items on every request:
every list is ranked), which is what the cache cannot help. Goals: >= 0.6x the hello QPS, p99 <= 10 ms at half
max; from Cassandra >= 0.6x the QPS from SQLite, and no degraded list for a known user under ``--connections``
clients at the default store timeout.

``--store cassandra|both`` needs ``$LAMBDAREC_TEST_CASSANDRA`` (``host:port``), ``--log kafka`` needs
``$LAMBDAREC_TEST_KAFKA``. ``--http-parser h11|httptools`` (``serving.http_parser``; default httptools) is every
server's HTTP parser. ``python -m benchmarks.serve hello PORT [WORKERS [PARSER]]`` runs the reference server.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from benchmarks.common import Goal, Result, Scale
from benchmarks.http_load import (
    ClosedRun,
    closed_loop_python,
    closed_loop_wrk,
    cpu_seconds,
    python_client_name,
    request_loop,
    run_client,
)
from benchmarks.serve_latency import CHOICES, OpenLoop, choose, p99_results
from benchmarks.serve_setup import (
    CASSANDRA_ENV,
    KAFKA_ENV,
    backend_config,
    build,
    fresh_reads_path,
    loop_name,
    merge_kernel,
    pinning,
    servers,
)

GOAL_QPS_RATIO, GOAL_CASSANDRA_RATIO = 0.6, 0.6
PATHS = 2_000  # distinct request paths the load cycles through
PARSER_ENV = "LAMBDAREC_SERVING__HTTP_PARSER"  # how `lambdarec serve` is given --http-parser
UNIQUE_PER_S = 8_000  # distinct paths generated per second of a no-repeat run: more than a saturated server takes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    store = "both" if os.environ.get(CASSANDRA_ENV) else "sqlite"
    log = "kafka" if os.environ.get(KAFKA_ENV) else "sqlite"
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections (default 16)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default by scale)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of every server (default 1)")
    parser.add_argument("--store", choices=["sqlite", "cassandra", "both"], default=store,
                        help=f"the store ours serves from (default here: {store}; cassandra: ${CASSANDRA_ENV})",
                        )  # fmt: skip
    parser.add_argument("--log", choices=["sqlite", "kafka"], default=log,
                        help=f"the log the Cassandra build's fresh state comes through (default here: {log}; "
                        f"kafka: ${KAFKA_ENV}); the SQLite store's build uses the SQLite log")  # fmt: skip
    parser.add_argument("--http-parser", choices=["httptools", "h11"], default="httptools",
                        help="every server's HTTP parser (serving.http_parser; default httptools)")  # fmt: skip
    parser.add_argument("--open-loop", choices=CHOICES, default="auto",
                        help="the p99 runs' generator: vegeta (on PATH or where `make bench-tools` puts it), "
                        "python (the asyncio open loop), or auto (vegeta when found, default)")  # fmt: skip


def hello_app():  # type: ignore[no-untyped-def]
    """The reference: the smallest FastAPI JSON endpoint."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def _uvicorn_hello(port: int, workers: int, parser: str = "httptools") -> None:
    import uvicorn

    from serving_layer.head_limit import protocol_class

    # the keyword arguments `lambdarec serve` passes (serving_layer/cli.py), so both servers run alike: the same
    # HTTP parser (`serving.http_parser`, from --http-parser) and event loop (loop="auto": uvloop if present)
    uvicorn.run("benchmarks.serve:hello_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                access_log=False, log_config=None, timeout_graceful_shutdown=10,
                http=protocol_class(parser))  # fmt: skip


# ---- the benchmark ---------------------------------------------------------------------------------------------


def _abba(names: tuple[str, ...]) -> tuple[str, ...]:
    """Each server twice, the second pass in reverse order (A-B-C-C-B-A)."""
    return names + names[::-1]


def _closed(port: int, paths: list[str], conns: int, duration: float, root: Path) -> ClosedRun:
    if shutil.which("wrk") is not None:
        return closed_loop_wrk(port, paths, conns, duration, root)
    return closed_loop_python(port, paths, conns, duration)


Rates = dict[str, float]


def _max_qps(names: tuple[str, ...], ports: dict[str, int], pids: dict[str, int], paths: dict[str, list[str]],
             conns: int, duration: float, root: Path) -> tuple[dict[str, ClosedRun], Rates, Rates]:  # fmt: skip
    """Best closed-loop run of each server (A-B-B-A, best of two); the server's CPU share in that run (~100%:
    saturated); its requests per server CPU-second (its cost, the figure that other load on the machine moves
    least); the degraded count is summed over both runs."""
    best: dict[str, ClosedRun] = {}
    busy: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    degraded: dict[str, tuple[int, int]] = {}
    for name in names:  # warm-up: caches, connections, the JIT-less but lazy paths
        run_client(request_loop(ports[name], paths[name], conns, 1.0, None))
    for name in _abba(names):
        cpu0, t0 = cpu_seconds(pids[name]), time.perf_counter()
        got = _closed(ports[name], paths[name], conns, duration, root)
        cpu1, t1 = cpu_seconds(pids[name]), time.perf_counter()
        seen = degraded.get(name, (0, 0))
        degraded[name] = (seen[0] + got.degraded, seen[1] + got.requests)
        if cpu0 is not None and cpu1 is not None and cpu1 > cpu0:
            per_cpu[name] = max(per_cpu.get(name, 0.0), got.qps * (t1 - t0) / (cpu1 - cpu0))
        if got.qps > best.get(name, ClosedRun(0.0, 0, 0)).qps:
            best[name] = got
            busy[name] = (cpu1 - cpu0) / (t1 - t0) if cpu0 is not None and cpu1 is not None else math.nan
    runs = {name: ClosedRun(best[name].qps, degraded[name][1], degraded[name][0]) for name in names}
    return runs, busy, per_cpu


def run(scale: Scale, args: argparse.Namespace) -> Iterator[Result]:
    from lambdarec.logs import configure_logging

    configure_logging("WARNING")  # stdout carries the results
    duration = args.duration or {"small": 3.0, "medium": 10.0, "large": 20.0}[scale]
    conns, workers = args.connections, args.workers
    stores = ("sqlite", "cassandra") if args.store == "both" else (args.store,)
    server_cpus, load_cpus, pinned = pinning()
    client = "wrk -t1" if shutil.which("wrk") else python_client_name()
    gen = choose(args.open_loop)
    own_affinity = os.sched_getaffinity(0)
    with tempfile.TemporaryDirectory(prefix="lambdarec-bench-serve-") as tmp, ExitStack() as stack:
        root = Path(tmp).resolve()
        commands: dict[str, tuple[list[str], str]] = {
            "hello": (["benchmarks.serve", "hello", "{port}", str(workers), args.http_parser], "/hello")
        }
        for store in stores:
            cfg = stack.enter_context(backend_config(root, store, args.log if store == "cassandra" else "sqlite"))
            users, items, fresh = build(cfg, root, scale)
            serve = ["lambdarec", "serve", "--config", str(cfg), "--port", "{port}", "--workers", str(workers)]
            commands[store] = (serve, "/readyz")
        ours = request_paths(users, items, PATHS, seed=7)
        paths = {name: ["/hello"] * PATHS if name == "hello" else ours for name in commands}
        hit = {p.split("/")[3] for p in ours}
        mix = (f"{len(hit)} distinct users of {len(users)} ({len(hit & fresh)} with fresh state: "
               f"{len(hit & fresh) / len(hit):.0%})")  # fmt: skip
        with servers(commands, server_cpus, {PARSER_ENV: args.http_parser}) as (ports, pids):  # ours reads env
            os.sched_setaffinity(0, load_cpus)
            try:
                how = f"closed loop {client}; {pinned}; {workers} worker(s), loop {loop_name()}"
                how += f", parser {args.http_parser}, merge: "
                how += ", ".join(f"{store} {merge_kernel(ports[store])}" for store in stores)
                if "cassandra" in stores:
                    how += f"; cassandra: {fresh_reads_path(ports['cassandra'])}"
                yield from _measure(stores, ports, pids, paths, conns, duration, root, how, scale, mix, gen)
                yield from _no_repeats(stores[0], ports, pids, (users, items), conns, duration, root, how, scale)
            finally:
                os.sched_setaffinity(0, own_affinity)


def request_paths(users: list[str], items: list[str], n: int, seed: int) -> list[str]:
    """``n`` request URLs: a user drawn from ``users``, three random session items each."""
    rng = random.Random(seed)
    return [f"/v1/users/{rng.choice(users)}/recommendations?k=10&session_items="
            f"{','.join(rng.sample(items, 3))}" for _ in range(n)]  # fmt: skip


def _cache_counts(port: int, metric: str = "answer_cache_total") -> dict[str, float]:
    """The answer cache's counts of the worker that answers this scrape (``lambdarec_serving_answer_cache_total``;
    ``kept_fresh_total``: its kept fresh states')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {k: float(v) for k, v in re.findall(rf'{metric}\{{result="(\w+)"\}} ([0-9.e+]+)', text)}


def _kept_note(before: dict[str, float], after: dict[str, float]) -> str:
    """What the Cassandra server's kept fresh states did over the runs (``serving.fresh_state_keep``)."""
    hit, miss = (after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss"))
    if not hit + miss:
        return "every request read its user's fresh state (serving.fresh_state_keep off, or the list not read)"
    return (f"fresh states kept until the store listed a change: {hit / (hit + miss):.0%} of users' states from "
            f"memory ({hit:.0f} kept, {miss:.0f} read; nothing written meanwhile)")  # fmt: skip


def _no_repeats(name: str, ports: dict[str, int], pids: dict[str, int], data: tuple[list[str], list[str]],
                conns: int, duration: float, root: Path, how: str, scale: Scale) -> Iterator[Result]:  # fmt: skip
    """Max QPS of ``name`` and hello when no request URL is sent twice (new paths in every run, A-B-B-A)."""
    best: dict[str, tuple[float, float]] = {}
    n = int(duration * UNIQUE_PER_S)
    for run, server in enumerate(_abba((name, "hello"))):
        paths = ["/hello"] * 100 if server == "hello" else request_paths(*data, n, seed=1000 + run)
        cpu0, t0 = cpu_seconds(pids[server]), time.perf_counter()
        got = _closed(ports[server], paths, conns, duration, root)
        cpu1, t1 = cpu_seconds(pids[server]), time.perf_counter()
        per_cpu = got.qps * (t1 - t0) / (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None and cpu1 > cpu0 else 0
        kept = best.get(server, (0.0, 0.0))
        best[server] = (max(kept[0], got.qps), max(kept[1], per_cpu))
    note = f"{how}; every request a URL not sent before (no answer to reuse: each list ranked); best of 2, A-B-B-A"
    yield Result("serve", f"{name}: max QPS, no repeated request, c={conns}", best[name][0], best["hello"][0],
                 "req/s", scale, note=note, goal=Goal(ratio=GOAL_QPS_RATIO))  # fmt: skip
    if best[name][1] and best["hello"][1]:
        yield Result("serve", f"{name}: requests per server CPU-second, no repeated request", best[name][1],
                     best["hello"][1], "req/cpu-s", scale, note=note)  # fmt: skip


def _measure(stores: tuple[str, ...], ports: dict[str, int], pids: dict[str, int], paths: dict[str, list[str]],
             conns: int, duration: float, root: Path, how: str, scale: Scale, mix: str,
             gen: OpenLoop) -> Iterator[Result]:  # fmt: skip
    first = stores[0]
    names = (first, "hello", *stores[1:])
    before = _cache_counts(ports[first])
    kept_before = _cache_counts(ports["cassandra"], "kept_fresh_total") if "cassandra" in stores else None
    runs, busy, per_cpu = _max_qps(names, ports, pids, paths, conns, duration, root)
    after = _cache_counts(ports[first])
    kept = "" if kept_before is None else _kept_note(kept_before, _cache_counts(ports["cassandra"], "kept_fresh_total"))
    counts = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss", "changed")}
    looked_up = sum(counts.values())
    cache = (f"answer cache of the worker scraped: {counts['hit'] / looked_up:.0%} hits "
             f"({counts['hit']:.0f} hit, {counts['miss']:.0f} miss, {counts['changed']:.0f} changed)"
             if looked_up else "answer cache off")  # fmt: skip
    cpu = ", ".join(f"{n} {busy[n]:.0%}" for n in names)
    yield Result("serve", f"{first}: max QPS, closed loop c={conns}", runs[first].qps, runs["hello"].qps, "req/s",
                 scale, note=f"{how}; {PATHS} request URLs cycled, {mix}; {cache}; best of 2, A-B-B-A; server "
                 f"CPU in the best run: {cpu} (below ~90%: not saturated: other processes took its CPU, or the "
                 f"generator was the limit)", goal=Goal(ratio=GOAL_QPS_RATIO))  # fmt: skip
    if {first, "hello"} <= per_cpu.keys():
        yield Result("serve", f"{first}: requests per server CPU-second", per_cpu[first], per_cpu["hello"],
                     "req/cpu-s", scale, note=f"{how}; best of 2")  # fmt: skip
    if "cassandra" in stores and "sqlite" in stores:
        yield Result("serve", f"cassandra vs sqlite: max QPS, c={conns}", runs["cassandra"].qps, runs["sqlite"].qps,
                     "req/s", scale, note=f"{how}; reference: the same requests from SQLite; {kept}",
                     goal=Goal(ratio=GOAL_CASSANDRA_RATIO))  # fmt: skip
    for store in stores:
        run = runs[store]
        yield Result("serve", f"{store}: lists not degraded, known users, c={conns}", run.requests - run.degraded,
                     run.requests, "lists", scale, note=f"{run.degraded} of {run.requests} lists degraded "
                     f"in both closed-loop runs, default store timeout (the goal: none)",
                     goal=Goal(ratio=1.0))  # fmt: skip
    yield from p99_results(stores, ports, paths, {n: runs[n].qps for n in names}, duration, root, gen, how, scale)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "hello":
        _uvicorn_hello(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1, *sys.argv[4:5])
    else:
        sys.exit(
            "usage: python -m benchmarks.serve hello PORT [WORKERS [PARSER]] (the benchmark: python -m benchmarks "
            "serve)"
        )
