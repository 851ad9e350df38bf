"""vegeta, the open-loop (constant-rate) HTTP load generator that ``python -m benchmarks serve`` uses for its p99
at half max QPS when it is installed: found on ``PATH`` or in the project's cache,
``$LAMBDAREC_CACHE/bin/vegeta-<version>/vegeta`` (``~/.cache/lambdarec`` when the variable is unset), where
``make bench-tools`` (``python -m benchmarks.vegeta install``) builds it with ``go install`` where Go exists.

How vegeta measures latency (v12.13.0, ``lib/attack.go`` and ``lib/pacer.go``): one pacer goroutine sleeps until
each request's due time on the constant-rate schedule (sending at once when it is behind) and hands a tick to an
idle worker; when every worker is busy it starts another, up to ``-max-workers``, which stays at its default
(unbounded) here, so a send never waits for an earlier response: no coordinated omission (the maintainer's word in
tsenart/vegeta#344 and #520). A worker stamps the request when it takes the tick and its latency runs from there
to the end of the response body, so it includes waiting for one of the ``-max-connections`` connections (set to
the benchmark's connection count, as the Python open loop's pool) but not any lateness of the pacer itself; the
report's achieved send rate, printed beside the p99, shows whether the generator kept the schedule. Percentiles
come from a t-digest (compression 100). A response outside 2xx, or a transport error (status 0), is a failure:
:func:`parse_report` counts them, and the benchmark says so instead of printing a clean p99.

Stdlib only, so ``make bench-tools`` can run it before the project's environment exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.http_load import OpenRun

MODULE = "github.com/tsenart/vegeta/v12"
VERSION = "v12.13.0"
GO_ENV = "LAMBDAREC_GO"  # the Go toolchain to build with (as deploy/local/seaweedfs.py), default `go` on PATH
GO_FALLBACK = "/usr/local/go/bin/go"  # where the go.dev tarball installs when its bin/ is not on PATH


def cache_dir() -> Path:
    """``$LAMBDAREC_CACHE/bin/vegeta-<VERSION>``, the folder ``install`` builds into."""
    cache = Path(os.environ.get("LAMBDAREC_CACHE") or Path.home() / ".cache" / "lambdarec")
    return cache / "bin" / f"vegeta-{VERSION}"


def find(search_path: str | None = None, cache: Path | None = None) -> Path | None:
    """vegeta on ``search_path`` (default ``$PATH``), else in ``cache`` (default :func:`cache_dir`); None if
    neither holds an executable ``vegeta``."""
    found = shutil.which("vegeta", path=search_path)
    if found is not None:
        return Path(found)
    candidate = (cache_dir() if cache is None else cache) / "vegeta"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def version(binary: Path) -> str:
    """The version ``vegeta -version`` prints; a ``go install`` build prints none, then the cache folder's name
    says it (``vegeta-v12.13.0``), else ``version unknown``."""
    try:
        out = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Version" and value.strip():
            return value.strip()
    parent = binary.parent.name
    return parent.removeprefix("vegeta-") if parent.startswith("vegeta-v") else "version unknown"


def go_tool() -> str | None:
    """The Go toolchain: ``$LAMBDAREC_GO``, else ``go`` on PATH, else the go.dev tarball's place; None if none."""
    named = os.environ.get(GO_ENV)
    if named:
        return shutil.which(named)
    return shutil.which("go") or (GO_FALLBACK if os.access(GO_FALLBACK, os.X_OK) else None)


def install() -> tuple[Path | None, str]:
    """vegeta found, or built into :func:`cache_dir` with ``go install MODULE@VERSION``; the binary (None when
    there is no Go) and a line saying what was done."""
    found = find()
    if found is not None:
        return found, f"vegeta found: {found} ({version(found)})"
    go = go_tool()
    if go is None:
        return None, (f"vegeta not installed (no Go toolchain; set ${GO_ENV} or install Go): the serve "
                      "benchmark's p99 uses its Python open loop, and says so")  # fmt: skip
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target), "GOFLAGS": "-buildvcs=false"}
    proc = subprocess.run([go, "install", f"{MODULE}@{VERSION}"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"go install {MODULE}@{VERSION} failed:\n{proc.stdout}{proc.stderr}")
    return target / "vegeta", f"installed vegeta {VERSION} into {target} (go install {MODULE}@{VERSION})"


def write_targets(path: Path, port: int, paths: list[str]) -> Path:
    """A targets file in vegeta's ``http`` format: one ``GET`` line per request path, which vegeta cycles
    through in order (as the Python loop cycles ``paths``)."""
    bad = [p for p in paths if not p.startswith("/") or any(c.isspace() for c in p)]
    if bad:
        raise ValueError(f"request paths must start with / and hold no whitespace: {bad[:3]}")
    path.write_text("".join(f"GET http://127.0.0.1:{port}{p}\n" for p in paths))
    return path


def parse_report(text: str) -> OpenRun:
    """An :class:`OpenRun` from ``vegeta report -type=json`` (latencies in ns; ``status_codes`` maps a code,
    ``0`` for a transport error, to its count; ``errors`` the distinct error strings)."""
    report = json.loads(text)
    lat = report["latencies"]
    codes = {str(code): int(n) for code, n in (report.get("status_codes") or {}).items()}
    failed = sum(n for code, n in codes.items() if not code.startswith("2") or len(code) != 3)
    failures = ""
    if failed or report.get("errors"):
        shown = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()) if code != "200")
        errors = "; ".join((report.get("errors") or [])[:3])
        failures = f"status {shown or 'all 200'}; errors: {errors or 'none'}"
    return OpenRun(p50_ms=lat["50th"] / 1e6, p99_ms=lat["99th"] / 1e6, max_ms=lat["max"] / 1e6,
                   requests=int(report["requests"]), rate=float(report["rate"]), failed=failed,
                   failures=failures)  # fmt: skip


def attack(binary: Path, port: int, paths: list[str], connections: int, duration_s: float, rate: int,
           root: Path) -> OpenRun:  # fmt: skip
    """One constant-rate run of ``rate`` requests/s for ``duration_s`` over at most ``connections`` keep-alive
    connections, cycling ``paths``; the process runs on this process's CPUs (the benchmark's load CPU)."""
    targets = write_targets(root / f"vegeta-targets-{port}.txt", port, paths)
    results = root / f"vegeta-results-{port}.bin"
    subprocess.run(
        [str(binary), "attack", f"-targets={targets}", f"-rate={rate}/1s", f"-duration={duration_s:g}s",
         f"-connections={connections}", f"-max-connections={connections}", f"-workers={connections}",
         "-keepalive=true", "-max-body=0", "-timeout=30s", f"-output={results}"],
        check=True, capture_output=True,
    )  # fmt: skip
    report = subprocess.run([str(binary), "report", "-type=json", str(results)], check=True, capture_output=True,
                            text=True).stdout  # fmt: skip
    results.unlink(missing_ok=True)
    return parse_report(report)


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        try:
            _, said = install()
        except RuntimeError as exc:
            print(f"bench-tools: {exc}", file=sys.stderr)
            return 1
        print(said)
        return 0
    if argv == ["where"]:
        found = find()
        print(found if found is not None else f"vegeta not on PATH nor in {cache_dir()}")
        return 0 if found is not None else 1
    print("usage: python -m benchmarks.vegeta install|where", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
