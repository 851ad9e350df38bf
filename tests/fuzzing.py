"""Shared pieces of the fuzz suite: example counts and hypothesis strategies for event wire bytes.

CI runs every fuzz test at its base example count (a couple of minutes in all on two cores); ``make fuzz``
raises them by ``LAMBDAREC_TEST_FUZZ_SCALE`` (default there: 10) and runs only the tests marked ``fuzz``.
"""

from __future__ import annotations

import json
import os
import time

from hypothesis import strategies as st

SCALE_ENV = "LAMBDAREC_TEST_FUZZ_SCALE"


def examples(base: int) -> int:
    """``base`` times ``$LAMBDAREC_TEST_FUZZ_SCALE`` (1 when unset)."""
    return max(1, round(base * float(os.environ.get(SCALE_ENV, "1"))))


NOW = time.time()
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
ids = st.text(max_size=30) | st.sampled_from(["u1", "i1", " ", "  x", "x\n", "\x00", "a" * 300, ""])
timestamps = (
    st.floats(min_value=NOW - 30 * 86400, max_value=NOW - 60)
    | st.integers(min_value=-(10**32), max_value=10**32)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["2024-02-01T00:00:00Z", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00", "nope", ""])
)
event_types = st.sampled_from(["view", "click", "cart", "purchase", "rating", "teleport", ""])
event_like = st.fixed_dictionaries(
    {"event_id": ids, "user_id": ids, "item_id": ids, "event_type": event_types, "timestamp": timestamps},
    optional={
        "weight": st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**30),
        "session_id": st.none() | ids,
        "context": json_values,
        "schema": st.integers(-3, 3),
        "extra": json_values,
    },
)


def deep(depth: int, opener: str = "[") -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    inner = '"k": ' if opener == "{" else ""
    return ((opener + inner) * depth + "1" + closer * depth).encode()


def encode(value: object) -> bytes:
    """JSON text of ``value``; NaN and infinities as the non-standard tokens a careless producer writes."""
    return json.dumps(value, allow_nan=True).encode()


wire_bytes = (
    st.binary(max_size=512)
    | json_values.map(encode)
    | event_like.map(encode)
    | st.tuples(st.integers(1, 20_000), st.sampled_from("[{")).map(lambda t: deep(*t))
    | event_like.map(lambda e: encode(e)[:-1] + b', "x": ' + deep(3000) + b"}")
)
