"""Byte encodings of arrays and rows: exact round trips, chunks within 1 MiB, corruption detected, no pickle."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.store import ItemRow, UserRow, codec


def test_arrays_round_trip_with_dtype_and_shape() -> None:
    for array in (np.arange(6, dtype=">i4").reshape(2, 3), np.array(["a", "bé"]), np.zeros((0, 4), np.float16)):
        back = codec.array_from_bytes(codec.array_to_bytes(array))
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)


def test_object_arrays_are_refused_and_pickles_are_not_loaded() -> None:
    with pytest.raises(TypeError, match="object array"):
        codec.array_to_bytes(np.array([None, 1], dtype=object))
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(codec.CorruptRowError, match="without pickle"):
        codec.array_from_bytes(buf.getvalue())


def test_chunks_are_at_most_one_mib_and_rejoin() -> None:
    data = bytes(range(256)) * (5 * codec.CHUNK_BYTES // 256 + 3)
    pieces = codec.chunk(data)
    assert len(pieces) == 6 and max(map(len, pieces)) == codec.CHUNK_BYTES == 1 << 20
    assert b"".join(pieces) == data
    assert codec.chunk(b"") == [b""]


def test_join_array_checks_count_and_checksum() -> None:
    data = codec.array_to_bytes(np.arange(10))
    pieces, sha = codec.chunk(data, 16), codec.checksum(data)
    np.testing.assert_array_equal(codec.join_array("v", "a", pieces, len(pieces), sha), np.arange(10))
    with pytest.raises(codec.CorruptRowError, match=f"array 'a' of snapshot v: {len(pieces) - 1} of {len(pieces)}"):
        codec.join_array("v", "a", pieces[:-1], len(pieces), sha)
    with pytest.raises(codec.CorruptRowError, match="sha256"):
        codec.join_array("v", "a", [b"x" + pieces[0][1:], *pieces[1:]], len(pieces), sha)


def test_user_and_item_rows_round_trip_and_name_bad_rows() -> None:
    row = UserRow("u", np.array([5, 1]), np.array([0.5, 0.25]), np.array([9]), np.array([2.0]))
    c, s, _, w = codec.decode_user_row(codec.encode_user(row))
    assert (c.dtype, s.dtype) == (np.int32, np.float32)
    np.testing.assert_array_equal(c, [5, 1]), np.testing.assert_array_equal(w, [2.0])
    with pytest.raises(ValueError, match="user 'u':"):
        codec.encode_user(UserRow("u", np.array([1]), np.array([1.0, 2.0]), np.array([]), np.array([])))
    n, s = codec.decode_item_row(codec.encode_item(ItemRow(3, np.array([1, 2]), np.array([0.9, 0.1]))))
    np.testing.assert_array_equal(n, [1, 2])
    with pytest.raises(ValueError, match="item 3:"):
        codec.encode_item(ItemRow(3, np.array([1]), np.array([])))
    with pytest.raises(codec.CorruptRowError):
        codec.decode_user_row(codec.encode_user(row)[:-1])
