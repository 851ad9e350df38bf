"""``most_recently_shown`` keeps exactly the items a full sort would: the ``n`` with the latest last impression,
ties broken by id (what serving's fatigue and every bounded impressions row rely on)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from speed_layer.feedback import most_recently_shown

rows = st.dictionaries(
    st.sampled_from([f"i{k}" for k in range(40)]),
    st.lists(st.sampled_from([1.0, 2.0, 3.0, 5.0, 8.0]), min_size=1, max_size=4),  # ties on purpose
    max_size=40,
)


@settings(max_examples=300, deadline=None, database=None)
@given(rows, st.integers(0, 45))
def test_keeps_the_n_latest_by_last_impression_then_id(shown: dict[str, list[float]], n: int) -> None:
    ranked = sorted(shown, key=lambda i: (shown[i][-1], i), reverse=True)
    expected = {i: shown[i] for i in ranked[:n]}
    before = {i: list(t) for i, t in shown.items()}
    assert most_recently_shown(shown, n) == expected
    assert shown == before  # the row given is never changed in place


def test_a_full_row_that_gains_items_loses_its_oldest() -> None:
    shown = {"old": [1.0, 9.0], "older": [2.0], "new": [10.0], "tie_b": [5.0], "tie_a": [5.0]}
    assert set(most_recently_shown(shown, 3)) == {"old", "new", "tie_b"}
    assert most_recently_shown(shown, 5) is shown
