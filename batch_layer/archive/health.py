"""What the archiver is doing, for operators: ``/readyz``, ``/livez`` and ``/metrics`` on its metrics port.

``/readyz`` is 503 with ``waiting_for`` (``log`` or ``lake``) and the last error while the archiver waits out a
dependency that does not answer, and 200 once it archives again; it resumes by itself, no restart needed.

Example
-------
>>> health = ArchiveHealth()
>>> health.waiting("lake", "OSError: No space left on device")
>>> health.to_json()["waiting_for"]
'lake'
>>> health.resumed(); health.to_json()["ready"]
True
"""

from __future__ import annotations

from typing import Literal

from batch_layer.archive import prometheus
from lambdarec.health import Health, serve_health

__all__ = ["ArchiveHealth", "Dependency", "serve_health"]
Dependency = Literal["log", "lake"]


class ArchiveHealth(Health):
    """Whether the archiver is archiving, or waiting for the log or the lake (and since when, and why)."""

    def __init__(self) -> None:
        super().__init__("archive", ("log", "lake"), prometheus.WAITING, prometheus.RETRIES)
