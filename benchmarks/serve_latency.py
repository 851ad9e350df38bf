"""The serve benchmark's p99 at half max QPS: an open loop (a fixed request rate, whatever the server answers)
against each server in turn, by vegeta when it is found (:mod:`benchmarks.vegeta`: on ``PATH`` or in the
project's cache, where ``make bench-tools`` puts it) and else by the Python open loop
(:func:`benchmarks.http_load.open_loop_python`). ``--open-loop vegeta|python`` asks for one (``vegeta`` fails
when it is not found; ``python`` forces the fallback); every result's note names the generator that ran.

Both send the same requests (the same paths, cycled in the same order) at the same integer rate over at most
``OPEN_LOOP_CONNECTIONS`` keep-alive connections, from the load generator's CPU. They time a request from a
different start: the Python loop from its scheduled send time, so its own lateness (one Python thread making
and parsing 2,000+ requests a second) counts as the server's latency; vegeta from the moment a worker sends it,
with workers enough that none waits for an earlier answer (no coordinated omission either way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from benchmarks import vegeta
from benchmarks.common import Goal, Result, Scale
from benchmarks.http_load import OpenRun, open_loop_python, python_client_name

GOAL_P99_MS = 10.0
OPEN_LOOP_CONNECTIONS = 64  # enough that requests wait on the server, not for a free connection
CHOICES = ("auto", "vegeta", "python")


class OpenLoop(NamedTuple):
    """The open-loop generator: vegeta's binary, or None for the Python loop; ``name`` says which, for notes."""

    binary: Path | None
    name: str

    def run(self, port: int, paths: list[str], duration_s: float, rate: int, root: Path) -> OpenRun:
        if self.binary is None:
            return open_loop_python(port, paths, OPEN_LOOP_CONNECTIONS, duration_s, rate)
        return vegeta.attack(self.binary, port, paths, OPEN_LOOP_CONNECTIONS, duration_s, rate, root)


def choose(want: str = "auto", search_path: str | None = None, cache: Path | None = None) -> OpenLoop:
    """The generator for ``want`` (``auto``: vegeta when found on ``search_path``, default ``$PATH``, or in
    ``cache``, default the project's, else Python; ``vegeta``: vegeta or SystemExit; ``python``: Python)."""
    if want not in CHOICES:
        raise ValueError(f"open loop {want!r}: choose one of {', '.join(CHOICES)}")
    where = vegeta.cache_dir() if cache is None else cache
    found = None if want == "python" else vegeta.find(search_path, where)
    if found is not None:
        return OpenLoop(found, f"open loop vegeta {vegeta.version(found)} (attack -rate, latency from each send, "
                               "workers unbounded)")  # fmt: skip
    if want == "vegeta":
        raise SystemExit(f"serve: --open-loop vegeta: vegeta is not on PATH nor in {where} (`make bench-tools` "
                         "installs it where Go exists)")  # fmt: skip
    why = "--open-loop python" if want == "python" else f"vegeta not found on PATH nor in {where}: make bench-tools"
    return OpenLoop(None, f"{python_client_name('open')}, latency from the scheduled send ({why})")


Counts = dict[str, tuple[int, int]]  # server -> (failed, sent)


def _best_of_two(names: tuple[str, ...], ports: dict[str, int], paths: dict[str, list[str]], rates: dict[str, int],
                 duration: float, root: Path, gen: OpenLoop) -> tuple[dict[str, OpenRun], Counts]:  # fmt: skip
    """Each server's better run of two (A-B-B-A; a run without failures before one with), and its failed and
    sent requests over both runs."""
    best: dict[str, OpenRun] = {}
    counts: Counts = {}
    for name in names + names[::-1]:
        got = gen.run(ports[name], paths[name], duration, rates[name], root)
        failed, sent = counts.get(name, (0, 0))
        counts[name] = (failed + got.failed, sent + got.requests)
        kept = best.get(name)
        if kept is None or (got.failed > 0, got.p99_ms) < (kept.failed > 0, kept.p99_ms):
            best[name] = got
    return best, counts


def p99_results(stores: tuple[str, ...], ports: dict[str, int], paths: dict[str, list[str]],
                max_qps: dict[str, float], duration: float, root: Path, gen: OpenLoop, how: str,
                scale: Scale) -> Iterator[Result]:  # fmt: skip
    """Ours (the first store) and hello at half our max QPS, each other store at half its own max, against the
    first store; then each server's requests answered 2xx in those runs (goal: all)."""
    first = stores[0]
    names = (first, "hello", *stores[1:])
    # the same offered load for ours and hello; an integer rate, which vegeta needs, for both generators
    rates = {name: max(1, round(max_qps[name] / 2)) for name in names}
    rates["hello"] = rates[first]
    load0 = os.getloadavg()[0]
    best, counts = _best_of_two(names, ports, paths, rates, duration, root, gen)
    load = f"load average {load0:.1f}-{os.getloadavg()[0]:.1f}"
    for name in stores:
        ref = "hello" if name == first else first
        ours, theirs = best[name], best[ref]
        warn = " ".join(_warnings(n, best[n], rates[n]) for n in (name, ref)).strip()
        yield Result("serve", f"{name}: p99 at half its max QPS (open loop)", ours.p99_ms, theirs.p99_ms, "ms",
                     scale, higher_is_better=False,
                     note=f"{warn}{' ' if warn else ''}{gen.name} at {rates[name]} req/s (sent {ours.rate:.0f}/s), "
                     f"reference {ref} at {rates[ref]} req/s (sent {theirs.rate:.0f}/s); better of 2, A-B-B-A; "
                     f"p50 {ours.p50_ms:.2f} and {theirs.p50_ms:.2f} ms, max {ours.max_ms:.1f} and "
                     f"{theirs.max_ms:.1f} ms; {load}; max QPS from the {how}",
                     goal=Goal(at_most=GOAL_P99_MS))  # fmt: skip
    for name in names:
        failed, sent = counts[name]
        yield Result("serve", f"{name}: p99 runs' requests answered 2xx", sent - failed, sent, "requests", scale,
                     note=f"{failed} of {sent} failed (outside 2xx or no answer) in both open-loop runs at "
                     f"{rates[name]} req/s (the goal: none); {gen.name}", goal=Goal(ratio=1.0))  # fmt: skip


def _warnings(name: str, run: OpenRun, rate: int) -> str:
    """What makes a run's p99 not a clean figure: failed requests, or a generator that sent under 95% of the
    rate (then the generator, not the server, set the pace); "" when neither."""
    said = f"NOT CLEAN: {name} had {run.failed} of {run.requests} requests fail ({run.failures});" if run.failed else ""
    if not run.rate >= 0.95 * rate:
        said += f" GENERATOR BEHIND: {name} sent {run.rate:.0f} of {rate} req/s;"
    return said
