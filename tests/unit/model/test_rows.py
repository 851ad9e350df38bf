"""The row types live in the core: the math that reads them loads no storage module (issue 13)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from lambdarec.model.rows import NO_STATE, UserRow, UserState
from lambdarec.store import FreshUser as StoreFreshUser
from lambdarec.store import UserRow as StoreUserRow


def test_the_math_imports_no_storage_module() -> None:
    probe = (
        "import sys, lambdarec.model.freshstate, lambdarec.rank.merge, lambdarec.rank.trending, lambdarec.model.rows\n"
        "print(sorted(m for m in sys.modules if m.startswith('lambdarec.store')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_store_exports_the_core_types_and_user_state_holds_them() -> None:
    assert StoreUserRow is UserRow and StoreFreshUser.__module__ == "lambdarec.model.rows"
    row = UserRow("u1", np.array([1], np.int32), np.array([0.5], np.float32), np.array([], np.int32),
                  np.array([], np.float32))  # fmt: skip
    state = UserState(batch_row=row)
    assert state.batch_row is row and state.fresh is None and UserState() == NO_STATE


def test_a_brand_new_items_shard_travels_packed_and_an_older_rows_users_are_read_as_before() -> None:
    """A shard's users, weights and vectors are written as arrays (no per-float msgpack); a row an older release
    wrote (``users``: user -> ``[weight, *vector]``, ``[weight]`` alone before any vector) decodes to the same
    terms, and a row written now decodes, under the older release's type, as a shard without users (no error)."""
    import msgspec

    from lambdarec.model.rows import ShardTerms, TrendingItem
    from lambdarec.store.codec import decode_trending, encode_fresh

    old_terms = {"u1": [3.0, 0.5, -1.25], "u2": [1.0], "u3": [2.5, 0.25, 4.0]}

    class OlderTrendingItem(msgspec.Struct, kw_only=True):  # the type before packed terms
        item_id: str
        partition: int = -1
        count: float = 0.0
        basis: str | None = None
        users: dict[str, list[float]] = {}

    older_row = msgspec.msgpack.encode(OlderTrendingItem(item_id="new", partition=2, count=3.0, basis="v1",
                                                         users=old_terms))  # fmt: skip
    shard = decode_trending(older_row)
    assert shard.users == {} and shard.term_users == ["u1", "u2", "u3"]
    assert shard.terms.as_dict() == old_terms
    np.testing.assert_array_equal(shard.terms.with_vector, [True, False, True])
    assert shard.terms.vectors.dtype == np.float32 and shard.terms.weights.dtype == np.float64

    row = encode_fresh(shard)
    assert decode_trending(row) == shard
    raw = msgspec.msgpack.decode(row)
    assert raw["users"] == {} and isinstance(raw["term_vectors"], bytes) and isinstance(raw["term_weights"], bytes)
    assert len(raw["term_vectors"]) == 3 * 2 * 4  # three users' float32 vectors of 2, the weight-only one NaN
    seen_by_older = msgspec.msgpack.decode(row, type=OlderTrendingItem)
    assert seen_by_older.users == {} and seen_by_older.count == 3.0

    built = TrendingItem(item_id="new", partition=2, count=3.0, basis="v1", users=old_terms)
    assert built == shard  # built from a mapping: packed the same way
    kept = shard.terms.select(np.array([False, True, True]))
    assert kept.as_dict() == {"u2": [1.0], "u3": [2.5, 0.25, 4.0]}
    assert ShardTerms.of({}).as_dict() == {}


def test_a_shard_whose_arrays_disagree_with_its_users_is_refused_when_read() -> None:
    """A damaged row (its arrays not the length its users say) is refused where it is read, not misread."""
    import msgspec
    import pytest

    from lambdarec.model.rows import TrendingItem

    bad = TrendingItem(item_id="new", term_users=["u1", "u2"], term_weights=np.zeros(1).tobytes(),
                       term_vectors=np.zeros(8, np.float32).tobytes())  # fmt: skip
    with pytest.raises(msgspec.ValidationError, match="2 term users, 1 weights"):
        bad.terms  # noqa: B018
