"""Fresh states kept decoded by their stored bytes (lambdarec.store.decoded): the same bytes give the same object,
other bytes are decoded anew, a row that does not decode is never kept, and the map stays within its bound."""

from __future__ import annotations

import msgspec
import pytest

from lambdarec.erasure import tombstone
from lambdarec.model.rows import FreshUser
from lambdarec.store import CorruptRowError
from lambdarec.store.codec import encode_fresh
from lambdarec.store.decoded import DECODED_FACTOR, ENTRY_BYTES
from lambdarec.store.erasure import decoded_states, fresh_rows


def _stored(user_id: str, n: int = 3) -> bytes:
    return encode_fresh(FreshUser(user_id=user_id, recent=[(f"i{j}", float(j)) for j in range(n)], updated_at=n))


def test_the_same_bytes_give_the_same_state_and_other_bytes_a_new_one() -> None:
    decoded = decoded_states(1 << 20)
    a, b = _stored("u1"), _stored("u1", 4)
    first = fresh_rows([("u1", a, None)], decoded)["u1"]
    assert fresh_rows([("u1", bytes(a), None)], decoded)["u1"] is first  # equal bytes, another bytes object
    changed = fresh_rows([("u1", b, None)], decoded)["u1"]
    assert changed is not first and changed.updated_at == 4
    erasure = encode_fresh(tombstone("u1", 100.0, {0: 5}))
    masked = fresh_rows([("u1", a, erasure)], decoded)["u1"]  # the same row seen through an erasure: other bytes
    assert masked.erased_at == 100.0 and masked.recent == []
    assert fresh_rows([("u1", a, None)], decoded)["u1"] is first
    assert (decoded.hits, decoded.misses, len(decoded)) == (2, 3, 3)
    assert fresh_rows([("u1", a, None)]) == {"u1": first}  # without the map: equal, decoded anew


def test_a_row_that_does_not_decode_is_refused_at_every_read_and_never_kept() -> None:
    decoded = decoded_states(1 << 20)
    for _ in range(2):
        with pytest.raises(CorruptRowError, match="'u9'") as caught:
            fresh_rows([("u1", _stored("u1"), None), ("u9", b"\xc1 not msgpack", None)], decoded)
        assert list(caught.value.rows) == ["u1"]
    assert len(decoded) == 1 and decoded.misses == 1 and decoded.hits == 1
    with pytest.raises(msgspec.DecodeError):
        decoded((b"\xc1", None))


def test_the_least_recently_read_states_go_first_within_the_bound() -> None:
    rows = {f"u{j}": _stored(f"u{j}") for j in range(4)}
    size = DECODED_FACTOR * len(rows["u0"]) + ENTRY_BYTES
    decoded = decoded_states(3 * size)
    kept = {u: decoded((data, None)) for u, data in rows.items() if u != "u3"}
    assert decoded((rows["u0"], None)) is kept["u0"]  # u0 read last: u1 is now the least recently read
    decoded((rows["u3"], None))
    assert len(decoded) == 3 and decoded.bytes == 3 * size <= decoded.max_bytes
    assert decoded((rows["u0"], None)) is kept["u0"] and decoded((rows["u2"], None)) is kept["u2"]
    assert decoded((rows["u1"], None)) is not kept["u1"]  # dropped, decoded again
    huge = decoded_states(size - 1)  # a state larger than the whole bound is decoded and not kept
    assert huge((rows["u0"], None)) == kept["u0"] and len(huge) == 0 and huge.bytes == 0
