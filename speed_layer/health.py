"""What the speed consumer is doing, for operators: ``/readyz``, ``/livez`` and ``/metrics`` on its metrics port.

``/readyz`` is 503 with ``waiting_for`` (``log`` or ``store``) and the last error while the consumer waits out a
dependency that does not answer, and 200 once it consumes again; it resumes by itself, no restart needed.

Example
-------
>>> health = SpeedHealth()
>>> health.waiting("store", "Cassandra did not answer (SELECT trending)")
>>> health.to_json()["waiting_for"]
'store'
>>> health.resumed(); health.to_json()["ready"]
True
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lambdarec.logs import get_logger
from speed_layer import metrics

log = get_logger(__name__)
Dependency = Literal["log", "store"]


class SpeedHealth:
    """Whether the consumer is consuming, or waiting for the log or the store (and since when, and why)."""

    def __init__(self) -> None:
        self.started = False  # connected once to both the log and the store
        self.waiting_for: Dependency | None = None
        self.error: str | None = None
        self.since = time.monotonic()
        self.retries = 0
        self._lock = threading.Lock()

    def waiting(self, dependency: Dependency, error: str) -> None:
        """A call to ``dependency`` failed; the consumer will retry after a backoff."""
        with self._lock:
            if self.waiting_for != dependency:
                self.since = time.monotonic()
                log.warning("speed.waiting", waiting_for=dependency, error=error)
            self.waiting_for, self.error = dependency, error
            self.retries += 1
        for dep in ("log", "store"):
            metrics.WAITING.labels(dependency=dep).set(1 if dep == dependency else 0)
        metrics.RETRIES.labels(dependency=dependency).inc()

    def resumed(self) -> None:
        """The consumer completed a cycle with both dependencies answering."""
        with self._lock:
            self.started = True
            if self.waiting_for is None:
                return
            waited_s = time.monotonic() - self.since
            log.info("speed.resumed", waited_for=self.waiting_for, waited_s=round(waited_s, 3), retries=self.retries)
            self.waiting_for, self.error, self.since, self.retries = None, None, time.monotonic(), 0
        for dep in ("log", "store"):
            metrics.WAITING.labels(dependency=dep).set(0)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            ready = self.started and self.waiting_for is None
            body: dict[str, Any] = {"ready": ready, "waiting_for": self.waiting_for}
            if self.waiting_for is not None:
                body |= {"error": self.error, "for_s": round(time.monotonic() - self.since, 1), "retries": self.retries}
            elif not self.started:
                body["reason"] = "starting: not yet connected to the log and the store"
            return body


def serve_health(health: SpeedHealth, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/readyz``, ``/livez`` and ``/metrics`` on ``host:port`` from a daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/readyz":
                body = health.to_json()
                self._send(200 if body["ready"] else 503, "application/json", json.dumps(body).encode())
            elif path == "/livez":
                self._send(200, "application/json", b'{"status": "alive"}')
            elif path in ("/metrics", "/"):
                self._send(200, CONTENT_TYPE_LATEST, generate_latest())
            else:
                self._send(404, "application/json", b'{"message": "not found: /readyz, /livez, /metrics"}')

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet: one line per scrape is noise
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="speed-health", daemon=True).start()
    return server
