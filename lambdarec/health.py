"""What a long-running process is doing, for operators: ``/readyz``, ``/livez`` and ``/metrics`` on its metrics port.

Shared by the speed consumer and the archiver. ``/readyz`` is 503 with ``waiting_for`` (the dependency, e.g.
``log``, ``store`` or ``lake``) and the last error while the process waits out a dependency that does not answer,
and 200 once it works again; it resumes by itself, no restart needed.

Example
-------
>>> from prometheus_client import CollectorRegistry, Counter, Gauge
>>> reg = CollectorRegistry()
>>> health = Health("demo", ("log", "lake"), Gauge("w", "", ["dependency"], registry=reg),
...                 Counter("r", "", ["dependency"], registry=reg))
>>> health.waiting("lake", "OSError: disk full")
>>> health.to_json()["waiting_for"]
'lake'
>>> health.resumed(); health.to_json()["ready"]
True
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from lambdarec.logs import get_logger

log = get_logger(__name__)


class Health:
    """Whether a process works, or waits for one of its dependencies (and since when, and why).

    ``name`` prefixes its log events (``<name>.waiting``, ``<name>.resumed``); ``waiting_gauge`` and
    ``retries_counter`` are labelled by ``dependency``.
    """

    def __init__(
        self,
        name: str,
        dependencies: Sequence[str],
        waiting_gauge: Gauge,
        retries_counter: Counter,
        starting_reason: str | None = None,
    ) -> None:
        self.name = name
        self.dependencies = tuple(dependencies)
        self.starting_reason = starting_reason or f"starting: not yet connected to the {' and the '.join(dependencies)}"
        self._waiting_gauge, self._retries = waiting_gauge, retries_counter
        self.started = False  # connected once to every dependency
        self.waiting_for: str | None = None
        self.error: str | None = None
        self.since = time.monotonic()
        self.retries = 0
        self._lock = threading.Lock()

    def waiting(self, dependency: str, error: str) -> None:
        """A call to ``dependency`` failed; the process will retry after a backoff."""
        with self._lock:
            if self.waiting_for != dependency:
                self.since = time.monotonic()
                log.warning(f"{self.name}.waiting", waiting_for=dependency, error=error)
            self.waiting_for, self.error = dependency, error
            self.retries += 1
        for dep in self.dependencies:
            self._waiting_gauge.labels(dependency=dep).set(1 if dep == dependency else 0)
        self._retries.labels(dependency=dependency).inc()

    def resumed(self) -> None:
        """The process completed a cycle with every dependency answering."""
        with self._lock:
            self.started = True
            if self.waiting_for is None:
                return
            waited_s = time.monotonic() - self.since
            log.info(
                f"{self.name}.resumed", waited_for=self.waiting_for, waited_s=round(waited_s, 3), retries=self.retries
            )
            self.waiting_for, self.error, self.since, self.retries = None, None, time.monotonic(), 0
        for dep in self.dependencies:
            self._waiting_gauge.labels(dependency=dep).set(0)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            ready = self.started and self.waiting_for is None
            body: dict[str, Any] = {"ready": ready, "waiting_for": self.waiting_for}
            if self.waiting_for is not None:
                body |= {"error": self.error, "for_s": round(time.monotonic() - self.since, 1), "retries": self.retries}
            elif not self.started:
                body["reason"] = self.starting_reason
            return body


def serve_health(health: Health, host: str, port: int) -> ThreadingHTTPServer:
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
    threading.Thread(target=server.serve_forever, name=f"{health.name}-health", daemon=True).start()
    return server
