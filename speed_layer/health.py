"""What the speed consumer is doing, for operators: ``/readyz``, ``/livez`` and ``/metrics`` on its metrics port.

``/readyz`` is 503 with ``waiting_for`` (``log`` or ``store``) and the last error while the consumer waits out a
dependency that does not answer, and 200 once it consumes again; it resumes by itself, no restart needed. The
mechanics are shared with the archiver (:mod:`lambdarec.health`).

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

from typing import Literal

from lambdarec.health import Health, serve_health
from speed_layer import prometheus

__all__ = ["Dependency", "SpeedHealth", "serve_health"]
Dependency = Literal["log", "store"]


class SpeedHealth(Health):
    """Whether the consumer is consuming, or waiting for the log or the store (and since when, and why)."""

    def __init__(self) -> None:
        super().__init__("speed", ("log", "store"), prometheus.WAITING, prometheus.RETRIES)
