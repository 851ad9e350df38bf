"""The serve benchmark's p99 generator: vegeta when it is found (on PATH or in the project's cache), else the Python
open loop, and every note says which ran; vegeta's JSON report read into latencies and failures, so a run with
failed requests says so instead of printing a clean p99. Nothing here depends on speed: only counts and notes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmarks import vegeta
from benchmarks.http_load import request_loop, run_client
from benchmarks.serve_latency import choose, p99_results

# what `vegeta report -type=json` printed for 50 requests, half of them answered 404 (latencies in ns)
FAILING_REPORT = {
    "latencies": {"total": 104577693, "mean": 2091553, "50th": 1918611, "90th": 2423342, "95th": 3103609,
                  "99th": 5277612, "max": 6277612, "min": 1566932},
    "bytes_in": {"total": 0, "mean": 0}, "bytes_out": {"total": 0, "mean": 0},
    "earliest": "2026-11-30T19:26:08.791541152Z", "latest": "2026-11-30T19:26:09.771824359Z",
    "end": "2026-11-30T19:26:09.77368007Z", "duration": 980283207, "wait": 1855711, "requests": 50,
    "rate": 51.0056682017608, "throughput": 25.454647547120214, "success": 0.5,
    "status_codes": {"200": 25, "404": 20, "0": 5},
    "errors": ["404 Not Found", 'Get "http://127.0.0.1:1/": connect: connection refused'],
}  # fmt: skip


def test_a_report_gives_milliseconds_and_counts_every_answer_outside_2xx_as_failed() -> None:
    run = vegeta.parse_report(json.dumps(FAILING_REPORT))
    assert run.p50_ms == pytest.approx(1.918611)
    assert run.p99_ms == pytest.approx(5.277612)
    assert run.max_ms == pytest.approx(6.277612)
    assert (run.requests, run.failed) == (50, 25)  # 20 answered 404 and 5 never answered (status 0)
    assert run.rate == pytest.approx(51.0056682017608)
    assert "404: 20" in run.failures and "0: 5" in run.failures and "connection refused" in run.failures


def test_a_clean_report_has_no_failures_whether_errors_is_empty_or_null() -> None:
    for errors in ([], None):
        clean = {**FAILING_REPORT, "status_codes": {"200": 49, "204": 1}, "errors": errors, "success": 1}
        run = vegeta.parse_report(json.dumps(clean))
        assert (run.failed, run.failures) == (0, "")


def test_the_targets_file_lists_every_path_in_order_on_the_loopback_port(tmp_path: Path) -> None:
    paths = ["/v1/users/u1/recommendations?k=10&session_items=a,b,c", "/hello", "/v1/users/u1/recommendations?k=10"]
    written = vegeta.write_targets(tmp_path / "targets.txt", 8123, paths)
    assert written.read_text().splitlines() == [f"GET http://127.0.0.1:8123{p}" for p in paths]
    with pytest.raises(ValueError, match="whitespace"):
        vegeta.write_targets(tmp_path / "bad.txt", 8123, ["/a b"])


def _executable(folder: Path, version: str = "") -> Path:
    """An executable named vegeta that prints what ``vegeta -version`` prints (only the lookup is tested here)."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "vegeta"
    exe.write_text(f"#!/bin/sh\necho 'Version: {version}'\necho 'Runtime: go'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_without_vegeta_the_python_open_loop_runs_and_every_note_says_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "vegeta").write_text("not executable")  # a file that cannot run is not vegeta
    gen = choose("auto", search_path=str(empty), cache=tmp_path / "cache")
    assert gen.binary is None
    assert "python asyncio open loop" in gen.name and "vegeta not found" in gen.name and "bench-tools" in gen.name
    with pytest.raises(SystemExit, match="--open-loop vegeta: vegeta is not on PATH"):
        choose("vegeta", search_path=str(empty), cache=tmp_path / "cache")


def test_vegeta_is_taken_from_the_path_else_from_the_cache_unless_python_is_asked_for(tmp_path: Path) -> None:
    on_path = _executable(tmp_path / "bin", version="v12.13.0")
    cached = _executable(tmp_path / "cache" / "vegeta-v12.13.0")  # a `go install` build prints no version
    gen = choose("auto", search_path=str(tmp_path / "bin"), cache=cached.parent)
    assert gen.binary == on_path and gen.name.startswith("open loop vegeta v12.13.0")
    gen = choose("vegeta", search_path=str(tmp_path / "nowhere"), cache=cached.parent)
    assert gen.binary == cached and "vegeta v12.13.0" in gen.name  # the version from the cache folder's name
    forced = choose("python", search_path=str(tmp_path / "bin"), cache=cached.parent)
    assert forced.binary is None and "--open-loop python" in forced.name


def test_the_cache_folder_follows_lambdarec_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_CACHE", str(tmp_path))
    assert vegeta.cache_dir() == tmp_path / "bin" / f"vegeta-{vegeta.VERSION}"
    exe = _executable(vegeta.cache_dir())
    assert vegeta.find(search_path=str(tmp_path / "nowhere")) == exe


class _Handler(BaseHTTPRequestHandler):
    """200 with a small JSON body on every path but ``/fail``, which gets a 500, and ``/drop``, whose connection
    is closed without an answer; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/drop"):
            self.close_connection = True
            return
        body = b'{"hello":"world"}'
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the generators open 64 connections at once: the default backlog of 5 drops SYNs


@pytest.fixture
def port() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _p99_lines(gen_want: str, port: int, ours: list[str], tmp_path: Path, search_path: str | None = None) -> dict:
    gen = choose(gen_want, search_path=search_path)
    results = list(p99_results(("sqlite",), {"sqlite": port, "hello": port}, {"sqlite": ours, "hello": ["/hello"]},
                               {"sqlite": 120.0, "hello": 300.0}, 0.5, tmp_path, gen, "how", "small"))  # fmt: skip
    return {r.metric: r for r in results}


def test_the_python_open_loop_reports_p99_p50_and_all_answered(port: int, tmp_path: Path) -> None:
    lines = _p99_lines("python", port, ["/a", "/b"], tmp_path)
    p99 = lines["sqlite: p99 at half its max QPS (open loop)"]
    assert p99.ours > 0 and p99.reference > 0 and "NOT CLEAN" not in p99.note
    assert "open loop on uvloop, latency from the scheduled send (--open-loop python) at 60 req/s" in p99.note
    assert "reference hello at 60 req/s" in p99.note  # the same rate
    assert "python asyncio open loop" in p99.note and "load average" in p99.note and "p50" in p99.note
    answered = lines["sqlite: p99 runs' requests answered 2xx"]
    assert answered.ours == answered.reference == 60  # 0.5 s at 60 req/s, twice


needs_vegeta = pytest.mark.skipif(
    vegeta.find() is None, reason="vegeta not installed (`make bench-tools` builds it where Go exists)"
)


@needs_vegeta
def test_vegeta_runs_at_the_rate_and_a_run_with_failures_says_so(port: int, tmp_path: Path) -> None:
    lines = _p99_lines("vegeta", port, ["/a", "/fail"], tmp_path)
    p99 = lines["sqlite: p99 at half its max QPS (open loop)"]
    assert p99.note.startswith("NOT CLEAN: sqlite had ") and "500: " in p99.note
    assert "open loop vegeta" in p99.note
    answered = lines["sqlite: p99 runs' requests answered 2xx"]
    assert 0 < answered.ours < answered.reference  # every other request failed
    hello = lines["hello: p99 runs' requests answered 2xx"]
    assert hello.ours == hello.reference > 0
    assert not list(tmp_path.glob("vegeta-results-*"))  # the results file is not left behind


@needs_vegeta
def test_vegeta_keeps_its_pace_and_reports_a_clean_run(port: int, tmp_path: Path) -> None:
    lines = _p99_lines("auto", port, ["/a", "/b"], tmp_path)
    p99 = lines["sqlite: p99 at half its max QPS (open loop)"]
    assert "NOT CLEAN" not in p99.note and "open loop vegeta" in p99.note
    assert p99.ours > 0 and p99.reference > 0
    answered = lines["sqlite: p99 runs' requests answered 2xx"]
    assert answered.ours == answered.reference > 0


def test_bench_tools_lookup_runs_without_site_packages(tmp_path: Path) -> None:
    """``make bench-tools`` runs ``python -m benchmarks.vegeta`` before the project's environment exists: the
    module needs only the standard library (``-S``: no site-packages)."""
    env = {**os.environ, "PATH": str(tmp_path), "LAMBDAREC_CACHE": str(tmp_path / "cache")}
    root = Path(vegeta.__file__).parents[1]
    proc = subprocess.run([sys.executable, "-S", "-m", "benchmarks.vegeta", "where"], cwd=root, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == f"vegeta not on PATH nor in {tmp_path / 'cache' / 'bin' / 'vegeta-v12.13.0'}"
    _executable(tmp_path / "cache" / "bin" / "vegeta-v12.13.0")
    proc = subprocess.run([sys.executable, "-S", "-m", "benchmarks.vegeta", "install"], cwd=root, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("vegeta found: ") and "v12.13.0" in proc.stdout


def test_the_python_open_loop_times_requests_finer_than_a_millisecond(port: int) -> None:
    """uvloop's ``loop.time()`` is libuv's clock, in whole milliseconds and read once per loop turn: latencies
    taken from it all come out whole milliseconds after their scheduled times (here 20 ms apart)."""
    latencies = run_client(request_loop(port, ["/a"], 4, 0.5, 50))
    assert len(latencies) == 25
    assert any(abs(s * 1000 - round(s * 1000)) > 1e-6 for s in latencies), latencies


def test_the_python_open_loop_counts_failed_requests_instead_of_stopping(port: int, tmp_path: Path) -> None:
    """A 500 or a connection the server drops is a failed request, counted and said, as vegeta's are; the run
    goes on (a reset connection once stopped the whole benchmark and lost every figure)."""
    lines = _p99_lines("python", port, ["/a", "/fail", "/a", "/drop"], tmp_path)
    p99 = lines["sqlite: p99 at half its max QPS (open loop)"]
    # 0.5 s at 60 req/s: 30 requests a run, /fail 8 of them and /drop 7
    assert p99.note.startswith(
        "NOT CLEAN: sqlite had 15 of 30 requests fail (8x HTTP/1.1 500 Internal Server Error; 7x"
    )
    assert "7x IncompleteReadError" in p99.note
    answered = lines["sqlite: p99 runs' requests answered 2xx"]
    assert (answered.ours, answered.reference) == (30, 60)
    hello = lines["hello: p99 runs' requests answered 2xx"]
    assert hello.ours == hello.reference == 60
