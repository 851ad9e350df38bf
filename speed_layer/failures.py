"""The streak of records whose application raised: past ``events.max_consecutive_failures`` in a row the consumer
halts (``ConsumerHaltedError``) before dead-lettering or committing them, for that is a bug to fix, not bad events.

Example
-------
>>> streak = FailureStreak(limit=3)
>>> streak.check([], poison={}, repeats=set(), bad=set())
"""

from __future__ import annotations

from lambdarec.eventlog.base import Record
from speed_layer.state import Position


class ConsumerHaltedError(RuntimeError):
    """Too many records in a row failed with an unexpected error: a bug to fix, not bad events to dead-letter."""


class FailureStreak:
    """Records in a row whose application raised, across batches."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.length = 0

    def check(
        self, records: list[Record], poison: dict[Position, str], repeats: set[Position], bad: set[Position]
    ) -> None:
        """Extend the streak with ``records`` (log order): a ``poison`` record extends it, an applied record or a
        repeat ends it, a ``bad`` (undecodable) record does neither (the producer's fault); raise
        ``ConsumerHaltedError`` when it reaches ``limit``."""
        streak = self.length
        for r in records:
            pos = (r.partition, r.offset)
            if pos in poison:
                streak += 1
                if streak >= self.limit:
                    raise ConsumerHaltedError(
                        f"{streak} records in a row failed with an unexpected error (events.max_consecutive_failures "
                        f"= {self.limit}); the last, at partition {pos[0]} offset {pos[1]}: {poison[pos]}. This looks "
                        "like a bug rather than bad events: nothing of this batch was dead-lettered or committed, so "
                        "the records will be applied once the consumer is fixed and restarted"
                    )
            elif pos in repeats or pos not in bad:
                streak = 0
        self.length = streak
