"""``lake wait``: block until the lake holds every event appended to the log before a time.

A nightly run scheduled just after midnight must not train on a partial day: it waits until the archiver's
positions pass what the log held at the cut-off. At ``until`` (or at once, when it has passed) the log's end
offsets are read; the wait ends when the lake's positions reach them on every partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lambdarec.eventlog import EventLog
from lambdarec.lake import Lake


@dataclass(frozen=True)
class WaitResult:
    """Whether the lake caught up, the targets (log end offsets at the cut-off) and the positions reached."""

    reached: bool
    targets: dict[int, int]
    positions: dict[int, int]
    waited_s: float

    def to_dict(self) -> dict[str, object]:
        return {
            "reached": self.reached,
            "targets": {str(p): n for p, n in sorted(self.targets.items())},
            "positions": {str(p): n for p, n in sorted(self.positions.items())},
            "waited_s": round(self.waited_s, 3),
        }


def wait_for_archive(
    lake: Lake, log: EventLog, until_s: float, timeout_s: float, poll_s: float = 1.0, source: str = "log"
) -> WaitResult:
    """Wait (at most ``timeout_s``) until the lake covers every record appended to ``log`` before ``until_s``
    (epoch s); ``source``: the log as the lake names it (``impressions``: the impressions log)."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.time() < until_s:
        if time.monotonic() >= deadline:
            return WaitResult(False, {}, lake.positions(log=source), time.monotonic() - started)
        time.sleep(min(poll_s, max(until_s - time.time(), 0.01), max(deadline - time.monotonic(), 0.01)))
    targets = {p: n for p, n in log.end_offsets().items() if n > 0}
    while True:
        positions = lake.positions(partitions=targets, log=source)
        if all(positions.get(p, 0) >= n for p, n in targets.items()):
            return WaitResult(True, targets, positions, time.monotonic() - started)
        if time.monotonic() >= deadline:
            return WaitResult(False, targets, positions, time.monotonic() - started)
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.01)))
