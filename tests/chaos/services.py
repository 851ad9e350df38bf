"""Real Cassandra and Kafka of the chaos suite's own: ``deploy/local/services`` with their own directory and
ports, killed with SIGKILL and brought back with ``services up``. Never the shared services of the test run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServices:
    """One Cassandra and one Kafka under ``root``, on free ports picked at construction."""

    def __init__(self, root: Path):
        """Free ports, unless ``root`` already holds services started before (their recorded ports)."""
        self.root = root
        recorded = [root / "cassandra" / "ports", root / "kafka" / "ports"]
        if all(p.is_file() for p in recorded):
            (cql, storage), (broker, controller) = (p.read_text().split() for p in recorded)
        else:
            cql, storage, broker, controller = (free_port() for _ in range(4))
        self.ports = {
            "LAMBDAREC_CASSANDRA_PORT": int(cql),
            "LAMBDAREC_CASSANDRA_STORAGE_PORT": int(storage),
            "LAMBDAREC_KAFKA_PORT": int(broker),
            "LAMBDAREC_KAFKA_CONTROLLER_PORT": int(controller),
        }
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "LAMBDAREC_CASSANDRA_UNSAFE_FAST"},
            **{k: str(v) for k, v in self.ports.items()},
            "LAMBDAREC_CASSANDRA_HEAP": os.environ.get("LAMBDAREC_TEST_CHAOS_CASSANDRA_HEAP", "768m"),
            "LAMBDAREC_KAFKA_HEAP": os.environ.get("LAMBDAREC_TEST_CHAOS_KAFKA_HEAP", "384m"),
            "LAMBDAREC_SERVICES_TIMEOUT": "420",
        }

    @property
    def cassandra(self) -> str:
        return f"127.0.0.1:{self.ports['LAMBDAREC_CASSANDRA_PORT']}"

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.ports['LAMBDAREC_KAFKA_PORT']}"

    def _run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SERVICES), *args, "--dir", str(self.root)], env=self.env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def up(self, *services: str) -> float:
        """Start (or restart) the services and wait until they answer; the seconds it took."""
        started = time.monotonic()
        proc = self._run("up", *services)
        if proc.returncode != 0:
            raise RuntimeError(f"services up {' '.join(services)} failed:\n{proc.stderr[-3000:]}")
        return time.monotonic() - started

    def pid(self, service: str) -> int | None:
        path = self.root / service / f"{service}.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self, service: str) -> None:
        """SIGKILL the service's whole process group, as a crash or the OOM killer would."""
        pid = self.pid(service)
        assert pid is not None, f"{service} is not running"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise AssertionError(f"{service} (pid {pid}) survived SIGKILL")

    def down(self) -> None:
        self._run("down", timeout=120)
