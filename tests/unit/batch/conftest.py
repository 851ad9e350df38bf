"""Fixtures for the batch layer's input side: logging restored after CLI runs, a small event table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

AS_OF = datetime(2024, 2, 1, tzinfo=UTC)
T0 = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
T0_MS = T0_S * 1000


@pytest.fixture
def rows() -> dict[str, list]:
    """Four good events of three users, one of them a duplicate by event id."""
    return {
        "user_id": ["u1", "u1", "u2", "u3", "u1"],
        "item_id": ["a", "b", "a", "c", "a"],
        "timestamp": [T0_S, T0_S + 60, T0_S + 120, T0_S + 180, T0_S],
        "event_type": ["view", "click", "purchase", "view", "view"],
        "weight": [1.0, 1.5, None, 2.0, 1.0],
        "event_id": ["e1", "e2", "e3", "e4", "e1"],
    }
