"""Byte encodings of arrays and rows: exact round trips, chunks within 1 MiB, corruption detected, no pickle."""

from __future__ import annotations

import struct

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
    back = codec.decode_user("u", codec.encode_user(row))
    c, s, w = back.candidates, back.scores, back.history_weights
    assert (c.dtype, s.dtype) == (np.int32, np.float32)
    np.testing.assert_array_equal(c, [5, 1]), np.testing.assert_array_equal(w, [2.0])
    with pytest.raises(ValueError, match="user 'u':"):
        codec.encode_user(UserRow("u", np.array([1]), np.array([1.0, 2.0]), np.array([]), np.array([])))
    n = codec.decode_item(3, codec.encode_item(ItemRow(3, np.array([1, 2]), np.array([0.9, 0.1])))).neighbours
    np.testing.assert_array_equal(n, [1, 2])
    with pytest.raises(ValueError, match="item 3:"):
        codec.encode_item(ItemRow(3, np.array([1]), np.array([])))
    with pytest.raises(codec.CorruptRowError):
        codec.decode_user("u", codec.encode_user(row)[:-1])


def _row() -> UserRow:
    return UserRow("u", np.array([5, 1], np.int32), np.array([0.5, 0.25], np.float32), np.array([9]), np.array([2.0]))


def test_every_user_and_item_row_carries_a_checksum_an_edit_breaks() -> None:
    data = bytearray(codec.encode_user(_row()))
    back = codec.decode_user("u", bytes(data))
    assert back.candidates.tolist() == [5, 1] and back.scores.tolist() == [0.5, 0.25]
    score = data.index(np.float32(0.5).tobytes())
    data[score : score + 4] = np.float32(2.1e38).tobytes()  # an absurd score, the length unchanged
    with pytest.raises(codec.CorruptRowError, match=r"user 'u'.*checksum"):
        codec.decode_user("u", bytes(data))
    item = bytearray(codec.encode_item(ItemRow(3, np.array([1, 2]), np.array([0.9, 0.1]))))
    assert codec.decode_item(3, bytes(item)).neighbours.tolist() == [1, 2]
    item[-5] ^= 0x01
    with pytest.raises(codec.CorruptRowError, match=r"item 3.*checksum"):
        codec.decode_item(3, bytes(item))


def test_a_row_is_bound_to_its_key_and_a_truncated_row_is_corrupt() -> None:
    data = codec.encode_user(_row())
    with pytest.raises(codec.CorruptRowError, match="user 'v'"):
        codec.decode_user("v", data)  # u's row copied under v's key
    with pytest.raises(codec.CorruptRowError, match=r"user 'u'.*bytes"):
        codec.decode_user("u", data[:-1])
    with pytest.raises(codec.CorruptRowError, match="item 4"):
        codec.decode_item(4, codec.encode_item(ItemRow(3, np.array([1]), np.array([0.5]))))


def test_corrupt_row_error_is_a_store_error_exported_by_the_store_package() -> None:
    from lambdarec.store import CorruptRowError, StoreError

    assert CorruptRowError is codec.CorruptRowError and issubclass(CorruptRowError, StoreError)


def test_decode_many_keeps_the_good_rows_and_names_the_corrupt_ones() -> None:
    good = codec.encode_user(_row())
    with pytest.raises(codec.CorruptRowError) as err:
        codec.decode_users("v1", [("u", good), ("w", good[:-2])])
    assert err.value.keys == ["w"] and list(err.value.rows) == ["u"] and "snapshot v1" in str(err.value)
    assert list(codec.decode_users("v1", [("u", good)])) == ["u"]


def test_check_indices_refuses_items_outside_the_catalogue() -> None:
    codec.check_user_indices(_row(), n_items=10)
    with pytest.raises(codec.CorruptRowError, match=r"user 'u'.*outside"):
        codec.check_user_indices(_row(), n_items=6)


def test_rows_written_before_checksums_still_read_and_are_checked_by_value() -> None:
    legacy = struct.pack("<HII", 1, 2, 1) + np.array([5, 1], "<i4").tobytes() + np.array([0.5, 0.25], "<f4").tobytes()
    legacy += np.array([9], "<i4").tobytes() + np.array([2.0], "<f4").tobytes()
    row = codec.decode_user("u", legacy)
    assert row.candidates.tolist() == [5, 1] and row.top_item is None
    codec.check_user_indices(row, n_items=10)
    with pytest.raises(codec.CorruptRowError, match="outside"):
        codec.check_user_indices(row, n_items=9)
    bad = legacy[:-4] + np.array([np.inf], "<f4").tobytes()
    with pytest.raises(codec.CorruptRowError, match="not finite"):
        codec.decode_user("u", bad)


def test_a_sealed_row_knows_its_largest_item_index() -> None:
    row = codec.decode_user("u", codec.encode_user(_row()))
    assert row.top_item == 9  # history item 9 > candidates 5, 1
    with pytest.raises(codec.CorruptRowError, match="item index 9"):
        codec.check_user_indices(row, n_items=9)
