#!/usr/bin/env python3
"""deploy/local/seaweedfs.py: a real S3-compatible server (SeaweedFS, Apache-2.0) for the lake's tests.

Stdlib only; `deploy/local/services COMMAND seaweedfs` calls it (the alias `s3` works too).

    seaweedfs.py up|down|status|env|fetch|clean [--dir DIR]

`fetch` builds the `weed` binary once from the Go module proxy and caches it under
$LAMBDAREC_CACHE/bin/seaweedfs-<version>/weed: `go install pkg@version` refuses the module's `replace`
directives, so the module is downloaded (`go mod download -json`), copied to a writable directory and built
there with `go build ./weed` (about 17 CPU-minutes and a 230 MB binary). `up` builds if needed, starts
`weed server -s3` bound to 127.0.0.1 in its own session, waits until the S3 API answers, creates the bucket
`lambdarec`, and prints `export LAMBDAREC_TEST_S3=127.0.0.1:PORT` (only that line on stdout).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

MODULE = "github.com/seaweedfs/seaweedfs"
# SeaweedFS tags (e.g. "4.01") are not semantic versions, so the Go proxy knows its commits as pseudo-versions.
VERSION = os.environ.get("LAMBDAREC_SEAWEEDFS_VERSION", "v0.0.0-20261109003541-7506e5f91cd6")
HOST = "127.0.0.1"
BUCKET = "lambdarec"
CACHE = Path(os.environ.get("LAMBDAREC_CACHE") or Path.home() / ".cache" / "lambdarec")
PORTS = {  # name -> (env variable, default); each gRPC port is set explicitly so none lands on a default
    "s3": ("LAMBDAREC_SEAWEEDFS_S3_PORT", 18333),
    "master": ("LAMBDAREC_SEAWEEDFS_MASTER_PORT", 19333),
    "volume": ("LAMBDAREC_SEAWEEDFS_VOLUME_PORT", 18380),
    "filer": ("LAMBDAREC_SEAWEEDFS_FILER_PORT", 18888),
    "master_grpc": ("LAMBDAREC_SEAWEEDFS_MASTER_GRPC_PORT", 29333),
    "volume_grpc": ("LAMBDAREC_SEAWEEDFS_VOLUME_GRPC_PORT", 28380),
    "filer_grpc": ("LAMBDAREC_SEAWEEDFS_FILER_GRPC_PORT", 28888),
    "s3_grpc": ("LAMBDAREC_SEAWEEDFS_S3_GRPC_PORT", 28333),
}
TIMEOUT = float(os.environ.get("LAMBDAREC_SERVICES_TIMEOUT", "180"))
STOP_TIMEOUT = float(os.environ.get("LAMBDAREC_SERVICES_STOP_TIMEOUT", "30"))


def log(msg: str) -> None:
    print(f"services: seaweedfs: {msg}", file=sys.stderr, flush=True)


def die(msg: str, *lines: str) -> None:
    print(f"services: ERROR: seaweedfs: {msg}", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    sys.exit(1)


def binary() -> Path:
    return CACHE / "bin" / f"seaweedfs-{VERSION}" / "weed"


def build() -> Path:
    """The cached `weed` binary, built first if absent (serialised across concurrent runs by a lock file)."""
    target = binary()
    if target.is_file():
        return target
    go = os.environ.get("LAMBDAREC_GO", "go")
    if shutil.which(go) is None:
        die(
            f"the Go toolchain ('{go}') is needed once to build SeaweedFS {VERSION} into {target}",
            "install Go >= 1.24 (https://go.dev/dl/) or set LAMBDAREC_GO, or point LAMBDAREC_TEST_S3 at a server",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent.parent / ".seaweedfs-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        env = {**os.environ, "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
        log(f"downloading {MODULE}@{VERSION} from the Go module proxy ...")
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            die(f"go mod download {MODULE}@{VERSION} failed", *(proc.stdout + proc.stderr).splitlines()[-20:])
        source = Path(json.loads(proc.stdout)["Dir"])
        with tempfile.TemporaryDirectory(prefix=".seaweedfs-build-", dir=target.parent.parent) as work:
            src = Path(work) / "src"
            shutil.copytree(source, src)  # the module cache is read-only; go build needs to write go.sum
            for path in [src, *src.rglob("*")]:
                with contextlib.suppress(OSError):
                    path.chmod(path.stat().st_mode | 0o200)
            log(f"building weed (about 17 CPU-minutes; cached afterwards in {target.parent}) ...")
            t0 = time.monotonic()
            out = Path(work) / "weed"
            proc = subprocess.run(
                [go, "build", "-o", str(out), "./weed"], cwd=src, env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                die("go build ./weed failed", *(proc.stdout + proc.stderr).splitlines()[-30:])
            os.replace(out, target)
            log(f"built {target} in {time.monotonic() - t0:.0f} s")
    return target


def base(dir_: Path) -> Path:
    return dir_ / "seaweedfs"


def ports(dir_: Path) -> dict[str, int]:
    """The ports a running server was started with, else those from the environment."""
    f = base(dir_) / "ports"
    if pid(dir_) is not None and f.is_file():
        return json.loads(f.read_text())
    return {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}


def pid(dir_: Path) -> int | None:
    """The pid of our running server for this DIR (checked against its command line), else None."""
    f = base(dir_) / "weed.pid"
    try:
        n = int(f.read_text().strip())
        cmdline = Path(f"/proc/{n}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    marker = f"-dir={base(dir_) / 'data'}".encode()
    return n if marker in cmdline else None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def s3_request(port: int, method: str, path: str) -> int:
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method, data=b"" if method == "PUT" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (a fixed http:// URL)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def answering(port: int) -> bool:
    """The S3 API answers and the bucket exists (created here: anonymous access is allowed without identities)."""
    try:
        if s3_request(port, "HEAD", f"/{BUCKET}") == 200:
            return True
        return s3_request(port, "PUT", f"/{BUCKET}") in (200, 409)
    except OSError:
        return False


def start(dir_: Path) -> subprocess.Popen[bytes]:
    weed = build()
    p = {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}
    for name, port in p.items():
        if not port_free(port):
            die(f"port {HOST}:{port} is already in use", f"pick another with {PORTS[name][0]}=<port>")
    b = base(dir_)
    (b / "data").mkdir(parents=True, exist_ok=True)
    (b / "logs").mkdir(exist_ok=True)
    (b / "ports").write_text(json.dumps(p))
    argv = [
        str(weed), "server", f"-dir={b / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}", "-master.volumeSizeLimitMB=256",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}", "-volume.max=32",
        "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # their catalogs' default ports (8181, 9101) stay free
    ]  # fmt: skip
    log(f"starting SeaweedFS {VERSION} (S3 {HOST}:{p['s3']}, data {b / 'data'})")
    with (b / "logs" / "weed.log").open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (b / "weed.pid").write_text(str(proc.pid))
    return proc


def stop(dir_: Path) -> None:
    n = pid(dir_)
    if n is None:
        (base(dir_) / "weed.pid").unlink(missing_ok=True)
        return
    log(f"stopping (pid {n})")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(n, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid(dir_) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid(dir_) is not None:
        log(f"did not stop within {STOP_TIMEOUT:g}s; sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(n, signal.SIGKILL)
    (base(dir_) / "weed.pid").unlink(missing_ok=True)
    log("stopped")


def env_line(dir_: Path) -> str:
    return f"export LAMBDAREC_TEST_S3={HOST}:{ports(dir_)['s3']}"


def cmd_fetch(dir_: Path) -> int:
    build()
    return 0


def cmd_env(dir_: Path) -> int:
    if pid(dir_) is None:
        log("is not running")
        return 1
    print(env_line(dir_))
    return 0


def cmd_status(dir_: Path) -> int:
    n, port = pid(dir_), ports(dir_)["s3"]
    state = "down" if n is None else ("up" if answering(port) else "starting")
    print(f"{'seaweedfs':9} {state:9} pid {n or '':<7} {HOST}:{port}")
    return 0 if state == "up" else 1


def cmd_down(dir_: Path) -> int:
    stop(dir_)
    return 0


def cmd_clean(dir_: Path) -> int:
    stop(dir_)
    log(f"removing {base(dir_)}")
    shutil.rmtree(base(dir_), ignore_errors=True)
    return 0


def cmd_up(dir_: Path) -> int:
    # Concurrent `up`s of one DIR (parallel test workers) take turns: the first starts the server, the others
    # find it running and wait for it to answer; without the lock two would start, and the loser's failure
    # cleanup would stop the winner's server.
    base(dir_).mkdir(parents=True, exist_ok=True)
    with (base(dir_) / ".up.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _up(dir_)


def _up(dir_: Path) -> int:
    # The server we start is watched through its process: right after the fork, /proc/PID/cmdline can still be
    # ours (the child has not exec'd weed yet on a busy machine), so pid() would wrongly find it gone.
    proc = start(dir_) if pid(dir_) is None else None
    deadline = time.monotonic() + TIMEOUT
    port = ports(dir_)["s3"]
    while not answering(port):
        code = proc.poll() if proc is not None else (None if pid(dir_) is not None else "gone")
        if code is not None or time.monotonic() > deadline:
            tail = (base(dir_) / "logs" / "weed.log").read_text(errors="replace").splitlines()[-30:]
            if os.environ.get("LAMBDAREC_SERVICES_KEEP_ON_FAILURE", "0") != "1":
                stop(dir_)
            why = f"exited ({code}) before" if code is not None else f"did not answer within {TIMEOUT:g}s of"
            die(f"the server {why} starting: its S3 API on {HOST}:{port} never answered", *tail)
        time.sleep(0.5)
    print(env_line(dir_))
    return 0


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "env": cmd_env,
    "fetch": cmd_fetch,
    "clean": cmd_clean,
}


def main(argv: list[str]) -> int:
    dir_ = Path(os.environ.get("LAMBDAREC_SERVICES_DIR") or CACHE / "services")
    command = None
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--dir" and rest:
            dir_ = Path(rest.pop(0))
        elif arg.startswith("--dir="):
            dir_ = Path(arg.split("=", 1)[1])
        elif arg in COMMANDS and command is None:
            command = arg
        else:
            command = None
            break
    if command is None:
        print(__doc__, file=sys.stderr)
        return 2
    dir_.mkdir(parents=True, exist_ok=True)
    return COMMANDS[command](dir_.resolve())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
