"""A stored erasure masks a user's row written from a state read before it (lambdarec.model.erased)."""

from __future__ import annotations

from msgspec import structs

from lambdarec.erasure import tombstone
from lambdarec.model.erased import masked, masked_shown, without_users
from lambdarec.model.rows import FreshUser, ShownItems, TrendingItem

GRAVE = tombstone("u1", 100.0, {0: 5, 1: 3})


def stale_state() -> FreshUser:
    """Built before the erasure: events on both sides of it, in two partitions, and feedback."""
    return FreshUser(
        user_id="u1",
        events=[("old", 10.0, 1.0), ("a", 20.0, 2.0), ("b", 30.0, 1.0), ("c", 40.0, 1.0)],
        event_positions=[(0, 1), (0, 6), (1, 2), (1, 3)],
        recent=[("old", 10.0), ("a", 20.0), ("b", 30.0), ("c", 40.0)],
        vector=[1.0, 2.0],
        basis="v1",
        positions={"0": 7, "1": 4},
        updated_at=40.0,
        appended_at=41.0,
        hidden={"h": 5.0},
        disliked={"d": 6.0},
        shown={"s": [7.0]},
    )


def test_a_state_built_before_the_erasure_keeps_only_what_the_log_brought_after_it() -> None:
    got = masked(stale_state(), GRAVE)
    assert got is not None
    assert got.events == [("a", 20.0, 2.0), ("c", 40.0, 1.0)]  # positions (0, 6) and (1, 3): at or past the end
    assert got.event_positions == [(0, 6), (1, 3)]
    assert got.recent == [("a", 20.0), ("c", 40.0)]
    assert (got.vector, got.basis, got.hidden, got.disliked, got.shown) == (None, None, {}, {}, {})
    assert got.positions == {"0": 7, "1": 4}
    assert (got.erased_at, got.erasure_seen, got.updated_at, got.appended_at) == (100.0, 100.0, 40.0, 41.0)


def test_positions_never_go_back_before_the_erasure() -> None:
    behind = structs.replace(stale_state(), events=[], event_positions=[], recent=[], positions={"0": 2})
    got = masked(behind, GRAVE)
    assert got is not None and got.positions == {"0": 5, "1": 3} and got.events == []
    assert got.updated_at == GRAVE.updated_at  # nothing of the user's own survives


def test_a_state_that_saw_the_erasure_and_rows_without_one_are_left_as_they_are() -> None:
    seen = structs.replace(stale_state(), erasure_seen=100.0)
    assert masked(seen, GRAVE) is seen
    later = structs.replace(stale_state(), erasure_seen=150.0)  # built after a newer erasure than this one
    assert masked(later, GRAVE) is later
    state = stale_state()
    assert masked(state, None) is state
    assert masked(None, GRAVE) is GRAVE
    assert masked(None, None) is None


def test_an_older_erasure_is_masked_again_by_a_newer_one() -> None:
    first = structs.replace(stale_state(), erasure_seen=50.0)
    got = masked(first, GRAVE)
    assert got is not None and got.erasure_seen == 100.0 and got.events == [("a", 20.0, 2.0), ("c", 40.0, 1.0)]


def test_an_impressions_row_written_before_the_erasure_keeps_no_impression() -> None:
    grave = ShownItems(user_id="u1", positions={"0": 5}, updated_at=0.0, erasure_seen=100.0)
    row = ShownItems(user_id="u1", shown={"i1": [1.0, 2.0]}, positions={"0": 9, "2": 1}, updated_at=2.0)
    assert masked_shown(row, grave) == ShownItems(user_id="u1", positions={"0": 9, "2": 1}, erasure_seen=100.0)
    seen = structs.replace(row, erasure_seen=100.0)
    assert masked_shown(seen, grave) is seen
    assert masked_shown(None, grave) is grave
    assert masked_shown(row, None) is row


def test_erased_users_leave_brand_new_items_shards_and_other_shards_stay_the_same_objects() -> None:
    new = TrendingItem(item_id="new", partition=0, count=3.0, basis="v1",
                       users={"u1": [1.0, 0.5, 0.5], "u2": [2.0, 0.1, 0.2]})  # fmt: skip
    plain = TrendingItem(item_id="old", partition=0, count=1.0)
    other = TrendingItem(item_id="new2", partition=1, count=1.0, users={"u3": [1.0, 0.3, 0.3]})
    got = without_users([(new.key, new), (plain.key, plain), (other.key, other)], {"u1"})
    assert got[new.key] == structs.replace(new, users={"u2": [2.0, 0.1, 0.2]})
    assert got[plain.key] is plain and got[other.key] is other
    assert without_users([(new.key, new)], set())[new.key] is new
