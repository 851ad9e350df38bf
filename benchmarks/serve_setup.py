"""What ``python -m benchmarks serve`` serves: a published snapshot with fresh state for a share of the users, in
the embedded backends (SQLite store and log) or the production ones (a throwaway Cassandra keyspace, a Kafka
topic); and the server processes, pinned to their CPUs.

Example
-------
>>> with backend_config(root, "cassandra", "kafka") as cfg:                 # doctest: +SKIP
...     users, items = build(cfg, root, "small")
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Scale

ROOT = Path(__file__).resolve().parents[1]
# users, items, events in the synthetic log
SCALES: dict[str, tuple[int, int, int]] = {
    "small": (2_000, 1_000, 60_000),
    "medium": (50_000, 10_000, 1_000_000),
    "large": (200_000, 50_000, 5_000_000),
}
FRESH_SHARE = 0.3  # share of users given fresh speed-layer state
CASSANDRA_ENV, KAFKA_ENV = "LAMBDAREC_TEST_CASSANDRA", "LAMBDAREC_TEST_KAFKA"


@contextmanager
def backend_config(root: Path, store: str, log: str) -> Iterator[Path]:
    """A config file for ``store`` (``sqlite`` or ``cassandra``) and ``log`` (``sqlite`` or ``kafka``) under
    ``root``; a Cassandra keyspace is created for it and dropped on exit (a Kafka topic stays: it is small)."""
    from lambdarec.settings import StoreSettings
    from lambdarec.store import open_store

    tag = secrets.token_hex(4)
    if store == "cassandra":
        store_url = f"cassandra://{_service(CASSANDRA_ENV)}/lambdarec_bench_serve_{tag}"
    else:
        store_url = f"sqlite:///{root}/store-{tag}"
    log_url = f"kafka://{_service(KAFKA_ENV)}/bench-serve-{tag}" if log == "kafka" else f"sqlite:///{root}/log-{tag}"
    cfg = root / f"serve-{store}-{log}.toml"
    cfg.write_text(f'[store]\nurl = "{store_url}"\n[log]\nurl = "{log_url}"\n[batch.train]\niterations = 5\n')
    if store != "cassandra":
        yield cfg
        return
    with open_store(StoreSettings(url=store_url)) as opened, ExitStack() as cleanup:
        opened.init_schema()
        cleanup.callback(opened.drop_schema)  # whatever the benchmark did
        yield cfg


def _service(env: str) -> str:
    where = os.environ.get(env)
    if not where:
        raise SystemExit(f"serve: ${env}=host:port must name the service for this backend")
    return where


def build(cfg: Path, root: Path, scale: Scale) -> tuple[list[str], list[str], set[str]]:
    """Publish a snapshot of a synthetic log and give a share of the users fresh state through the speed layer,
    on the backends ``cfg`` names; the user and item ids (the same for every backend: the log is seeded), and the
    users given fresh state."""
    from batch_layer.job import run_batch
    from batch_layer.synth import SynthSpec, synthesize
    from lambdarec.eventlog import open_log
    from lambdarec.events import Event
    from lambdarec.settings import Settings
    from speed_layer.consumer import SpeedConsumer

    users, items, events = SCALES[scale]
    log = synthesize(SynthSpec(users=users, items=items, events=events, seed=11)).events
    log.write_parquet(root / "log.parquet")
    settings = Settings.load(cfg)
    as_of = datetime(2024, 2, 1, tzinfo=UTC)
    run_batch(settings, interactions=str(root / "log.parquet"), as_of=as_of, force=True, progress=False)
    known = sorted(set(log["user_id"].to_list()))
    item_ids = sorted(set(log["item_id"].to_list()))
    rng = random.Random(3)
    fresh = rng.sample(known, int(len(known) * FRESH_SHARE))
    start = as_of.timestamp() + 60
    events = [Event(event_id=f"b{n}", user_id=u, item_id=rng.choice(item_ids), event_type="view",
                    timestamp=start + n) for n, u in enumerate(fresh * 3)]  # fmt: skip
    with open_log(settings) as event_log:
        event_log.ensure_topic()
        event_log.append(events)  # keyed by user_id
    with SpeedConsumer(settings) as consumer:
        consumer.run(until_idle_s=2.0)
    return known, item_ids, set(fresh)


# ---- server processes ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], cpus: set[int], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` on ``cpus`` (taskset, so every thread and worker process stays there)."""
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if shutil.which("taskset") else []
    proc = subprocess.Popen([*pin, *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not pin:
        os.sched_setaffinity(proc.pid, cpus)
    return proc


def wait_ready(url: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {timeout_s} s")


def merge_kernel(port: int, timeout_s: float = 120.0) -> str:
    """Which merge path a serving process settled on: waits (up to ``timeout_s``) for its compiled kernel to load
    in the background (``lambdarec_serving_merge_kernel`` 1), so a run measures that and not the start-up;
    ``numpy steps`` when switched off (``LAMBDAREC_FUSED_MERGE=0``) or not loaded in time."""
    from lambdarec.rank import kernel  # no numba: the switch the servers read from this same environment

    if not kernel.ENABLED:
        return "numpy steps (LAMBDAREC_FUSED_MERGE=0)"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            if "lambdarec_serving_merge_kernel 1.0" in response.read().decode():
                return "fused kernel"
        time.sleep(0.2)
    return f"numpy steps (the kernel did not load within {timeout_s:.0f} s)"


def fresh_reads_path(port: int) -> str:
    """How a serving process reads users' fresh state from Cassandra: through the C++ driver (acsylla) or
    cassandra-driver (``lambdarec_serving_cassandra_native_reads``, ``serving.cassandra_reads``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        native = "lambdarec_serving_cassandra_native_reads 1.0" in response.read().decode()
    return "fresh state through the C++ driver (acsylla)" if native else "fresh state through cassandra-driver"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pinning() -> tuple[set[int], set[int], str]:
    """The servers' CPUs, the load generator's, and a line saying so."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus), f"servers and load share cpu {cpus} (only one available)"
    return {cpus[0]}, {cpus[1]}, f"servers on cpu {cpus[0]}, load generator on cpu {cpus[1]}"


def loop_name() -> str:
    """The event loop uvicorn's ``loop="auto"`` (what every server here runs) picks: uvloop when installed."""
    try:
        import uvloop  # noqa: F401 - only asks whether it is installed
    except ImportError:
        return "asyncio"
    return "uvloop"


@contextmanager
def servers(
    commands: dict[str, tuple[list[str], str]], cpus: set[int], env: dict[str, str] | None = None
) -> Iterator[tuple[dict[str, int], dict[str, int]]]:
    """``name -> (python -m argv with {port}, ready path)`` started on ``cpus`` (with ``env`` added to this
    process's environment); their ports and pids once all answer."""
    ports = {name: free_port() for name in commands}
    env = {**os.environ, "LAMBDAREC_LOG_LEVEL": "WARNING", **(env or {})}
    procs = {
        name: start([sys.executable, "-m", *(a.format(port=ports[name]) for a in argv)], cpus, env)
        for name, (argv, _) in commands.items()
    }
    try:
        for name, (_, ready) in commands.items():
            wait_ready(f"http://127.0.0.1:{ports[name]}{ready}")
        yield ports, {name: proc.pid for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            stop(proc)
