"""HTTP load generators for ``python -m benchmarks serve``: ``wrk`` cycling through request paths, and a Python
asyncio loop over keep-alive connections, closed (max QPS) or open at a fixed rate (latency from each request's
scheduled send time, so a stalled server cannot hide its queue)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
DEGRADED = b"x-lambdarec-degraded"  # the header of a list served degraded (serving_layer.recommend)
# Counts responses carrying the degraded header in every wrk thread, and prints the sum when wrk is done.
_WRK_COUNT = """
threads = {}
degraded = 0
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  if headers["x-lambdarec-degraded"] or headers["X-Lambdarec-Degraded"] then degraded = degraded + 1 end
end
done = function(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("degraded") end
  io.write(string.format("requests: %d\\ndegraded: %d\\n", summary.requests, n))
end
"""


class OpenRun(NamedTuple):
    """One open-loop (fixed-rate) run: latency percentiles and maximum (ms), requests sent, the achieved send rate,
    and how many failed (outside 2xx or a transport error) with a line describing them ("" when none)."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    rate: float
    failed: int
    failures: str


class ClosedRun(NamedTuple):
    """One closed-loop run: requests/s, requests answered, and how many carried the degraded header."""

    qps: float
    requests: int
    degraded: int


def closed_loop_wrk(port: int, paths: list[str], connections: int, duration_s: float, root: Path) -> ClosedRun:
    """A run of ``wrk`` cycling through ``paths`` (one Lua script for every server: same client cost)."""
    script = root / f"paths-{port}.lua"
    listed = ",\n".join(f'"{p}"' for p in paths)
    script.write_text(
        f"paths = {{\n{listed}\n}}\ni = 0\nrequest = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n' + _WRK_COUNT
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    qps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"requests: (\d+)", out).group(1))  # type: ignore[union-attr]
    return ClosedRun(qps, requests, int(re.search(r"degraded: (\d+)", out).group(1)))  # type: ignore[union-attr]


def closed_loop_python(port: int, paths: list[str], connections: int, duration_s: float) -> ClosedRun:
    """A run of the Python closed loop (when ``wrk`` is not installed)."""
    degraded: list[int] = []
    latencies = run_client(request_loop(port, paths, connections, duration_s, None, degraded))
    return ClosedRun(len(latencies) / duration_s, len(latencies), len(degraded))


class StatusError(RuntimeError):
    """An answer other than 200: ``status`` is its status line."""

    def __init__(self, head: bytes) -> None:
        super().__init__(f"request failed: {head[:200]!r}")
        self.status = head.split(b"\r\n", 1)[0].decode("latin-1")


async def _request(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes) -> bool:
    """Send one request and read its answer; whether it carried the degraded header."""
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise StatusError(head)
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return DEGRADED in head.lower()


async def request_loop(
    port: int,
    paths: list[str],
    connections: int,
    duration_s: float,
    rate: float | None,
    degraded: list[int] | None = None,
    failures: list[str] | None = None,
) -> list[float]:
    """Latencies (s): a closed loop when ``rate`` is None, else an open loop at ``rate`` requests/s; the number
    of each request answered degraded is appended to ``degraded`` when given. A request answered outside 200, or
    not at all, raises; with ``failures`` given it is appended there instead (its latency kept, as vegeta keeps
    it) and its connection replaced."""
    raws = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for p in paths]
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    # not loop.time(): uvloop's is libuv's clock, whole milliseconds read once per loop turn
    clock = time.monotonic
    latencies: list[float] = []
    start = clock() + 0.05
    end = start + duration_s

    async def one(n: int, scheduled: float) -> None:
        conn = await pool.get()
        try:
            if await _request(conn, raws[n % len(raws)]) and degraded is not None:
                degraded.append(n)
        except (OSError, EOFError, RuntimeError) as exc:  # IncompleteReadError is an EOFError
            if failures is None:
                raise
            failures.append(exc.status if isinstance(exc, StatusError) else f"{type(exc).__name__}: {exc}"[:160])
            conn[1].close()  # what is left of the answer is unread: a new connection for the next request
            conn = await asyncio.open_connection("127.0.0.1", port)
        latencies.append(clock() - scheduled)  # from the scheduled time: queueing counts
        pool.put_nowait(conn)

    async def closed(worker: int) -> None:
        n = worker
        while clock() < end:
            await one(n, clock())
            n += connections

    if rate is None:
        await asyncio.gather(*(closed(w) for w in range(connections)))
    else:
        tasks, n = [], 0
        while (scheduled := start + n / rate) < end:
            await asyncio.sleep(max(scheduled - clock(), 0))
            while (due := start + n / rate) <= clock() and due < end:  # catch up after a late wake-up
                tasks.append(asyncio.ensure_future(one(n, due)))
                n += 1
        await asyncio.gather(*tasks)
    for _, writer in [pool.get_nowait() for _ in range(pool.qsize())]:
        writer.close()
    return latencies


def open_loop_python(port: int, paths: list[str], connections: int, duration_s: float, rate: float) -> OpenRun:
    """A run of the Python open loop at ``rate`` requests/s (latency from each request's scheduled send time, so
    the generator's own lateness counts too), its failed requests counted and the commonest three described."""
    failures: list[str] = []
    latencies = run_client(request_loop(port, paths, connections, duration_s, rate, None, failures))
    said = "; ".join(f"{n}x {what}" for what, n in Counter(failures).most_common(3))
    return OpenRun(percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99), max(latencies) * 1000,
                   len(latencies), len(latencies) / duration_s, len(failures), said)  # fmt: skip


def percentile_ms(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000


def run_client(coro: Coroutine[Any, Any, T]) -> T:
    """Run the Python load generator's loop: on uvloop when installed (about twice the requests per core)."""
    try:
        import uvloop  # optional: the generator still runs on a bare asyncio loop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def python_client_name(kind: str = "closed") -> str:
    """``python asyncio {kind} loop``, ``on uvloop`` when installed (``kind``: closed or open)."""
    try:
        import uvloop  # noqa: F401 - only asks whether it is installed
    except ImportError:
        return f"python asyncio {kind} loop"
    return f"python asyncio {kind} loop on uvloop"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its child processes (uvicorn workers), from /proc; None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    try:
        while todo:
            p = todo.pop()
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    except (OSError, ValueError, IndexError):
        return None
    return total
