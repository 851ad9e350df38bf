"""When and how long the client waits before trying a call again.

Retried: connection errors, timeouts and 5xx answers (a restart, a load balancer without a healthy backend);
never a 4xx (the request itself is wrong and would fail again). Every endpoint the client calls is safe to
repeat: reads, and writes whose ids make a repeat a no-op (events by ``event_id``, items by ``item_id``).
Waits grow exponentially with jitter (:class:`lambdarec.backoff.Backoff`), and a ``Retry-After`` from the
service is honoured up to ``max_delay_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdarec.backoff import Backoff

RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1: no retry); waits from ``initial_delay_s`` doubling up to ``max_delay_s``."""

    attempts: int = 3
    initial_delay_s: float = 0.05
    max_delay_s: float = 1.0
    seed: int | None = None  # fixes the jitter (tests)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s")

    def backoff(self) -> Backoff:
        return Backoff(self.initial_delay_s, self.max_delay_s, seed=self.seed)

    def delay(self, backoff: Backoff, retry_after_s: float | None) -> float:
        """The wait before the next attempt: the backoff's, or the service's ``Retry-After`` (capped)."""
        drawn = backoff.next_delay()
        return min(retry_after_s, self.max_delay_s) if retry_after_s is not None else drawn
