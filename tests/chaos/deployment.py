"""One lambdarec deployment on the chaos suite's services: its own keyspace and topic, a first snapshot, and the
real processes (``lambdarec serve``, ``lambdarec speed run``, ``lambdarec events send``) as subprocesses.

Events are numbered: event ``n`` is user ``c{n % USERS}`` viewing item ``i{n % 100}`` at ``T0 + 1 + n`` seconds,
so the speed layer's fresh state tells, by event time, which events it applied and how often.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch_layer.job import run_batch
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer.auth import hash_key
from tests.chaos.services import LocalServices, free_port

T0 = datetime(2024, 2, 1, tzinfo=UTC).timestamp()
USERS = 40
INGEST_KEY = "chaos-ingest-key"


def event(n: int) -> dict[str, Any]:
    return {"event_id": f"chaos-{n}", "user_id": f"c{n % USERS}", "item_id": f"i{n % 100}", "event_type": "view",
            "timestamp": T0 + 1 + n}  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float) -> float:
    """Poll ``condition`` until true; the seconds it took. AssertionError naming ``what`` after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def get(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, JSON body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (OSError, ValueError):
        return 0, None


class Deployment:
    """Settings file, first snapshot, processes, and the checks against the accepted set."""

    def __init__(self, services: LocalServices, root: Path):
        self.services, self.root = services, root
        suffix = secrets.token_hex(4)
        self.keyspace, self.topic = f"chaos_{suffix}", f"chaos-{suffix}"
        self.config = root / "lambdarec.toml"
        self.config.write_text(
            f"""[store]
url = "cassandra://{services.cassandra}/{self.keyspace}?dc=datacenter1"
connect_timeout_s = 3.0
request_timeout_s = 3.0
reconnect_max_s = 1.0
current_cache_s = 0.5

[log]
url = "kafka://{services.kafka}/{self.topic}"
consumer_group = "{self.topic}-speed"
dead_letter = "{self.topic}-dead"
partitions = 2
request_timeout_ms = 8000

[batch]
top_k = 30
lock_ttl_s = 10

[batch.train]
iterations = 3
factors = 8

[speed]
poll_max_records = 200
retry_initial_s = 0.2
retry_max_s = 2.0

[serving]
snapshot_poll_s = 0.5
trending_refresh_s = 1.0
ingest_key_hashes = ["{hash_key(INGEST_KEY)}"]
"""
        )
        self.settings = Settings.load(self.config)
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, int] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDAREC_")}
        self.env |= {"LAMBDAREC_CONFIG": str(self.config), "LAMBDAREC_LOG_FORMAT": "json"}

    # ---- setup -------------------------------------------------------------------------------------------------

    def publish_first_snapshot(self) -> str:
        with open_store(self.settings) as store:
            store.init_schema()
        path = self.root / "history.parquet"
        synthesize(SynthSpec(users=200, items=100, events=4000, seed=9)).events.write_parquet(path)
        result = run_batch(self.settings, interactions=str(path), as_of=datetime.fromtimestamp(T0, UTC),
                           force=True, progress=False)  # fmt: skip
        return result.manifest["version"]

    # ---- processes ---------------------------------------------------------------------------------------------

    def lambdarec(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lambdarec", *args], env=self.env, capture_output=True,
                              text=True, **kwargs)  # fmt: skip

    def _start(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "lambdarec", *args], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def start_serve(self) -> str:
        self.ports["serve"] = port = free_port()
        self._start("serve", "serve", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(base + "/readyz")[0] == 200, "serve to be ready", 120)
        return base

    def start_speed(self) -> str:
        self.ports["speed"] = port = free_port()
        self._start("speed", "speed", "run", "--metrics-port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(base + "/readyz")[0] == 200, "speed run to be ready", 120)
        return base

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def output(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    # ---- ingestion ---------------------------------------------------------------------------------------------

    def post(self, base: str, numbers: list[int], timeout: float = 30.0) -> tuple[int, str]:
        body = json.dumps([event(n) for n in numbers]).encode()
        headers = {"X-API-Key": INGEST_KEY, "Content-Type": "application/json"}
        request = urllib.request.Request(base + "/v1/events", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def write_events_file(self, numbers: Iterable[int]) -> Path:
        path = self.root / "events.jsonl"
        path.write_text("".join(json.dumps(event(n)) + "\n" for n in numbers))
        return path

    # ---- checks ------------------------------------------------------------------------------------------------

    def applied(self) -> Counter[int]:
        """How many times the speed layer's fresh state counts each event (by its number)."""
        counts: Counter[int] = Counter()
        with open_store(self.settings) as store:
            for state in store.read_fresh_users([f"c{u}" for u in range(USERS)]).values():
                counts.update(round(t - T0 - 1) for _, t, _ in state.events)
        return counts

    def logged(self) -> Counter[int]:
        """How many times each event (by number) is in the event log."""
        from lambdarec.eventlog import open_log

        counts: Counter[int] = Counter()
        with open_log(self.settings) as log, log.consumer(f"audit-{secrets.token_hex(3)}") as consumer:
            ends = log.end_offsets()
            seen = dict.fromkeys(ends, 0)
            deadline = time.monotonic() + 120
            while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                for r in consumer.poll(max_records=5000, timeout_ms=1000):
                    seen[r.partition] = r.offset + 1
                    counts[int(json.loads(r.value)["event_id"].split("-")[1])] += 1
        return counts
