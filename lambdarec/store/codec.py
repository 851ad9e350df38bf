"""Byte encodings of what the store holds: arrays, per-user rows, per-item rows, fresh state. Never pickle.

Arrays travel as ``.npy`` bytes written and read with ``allow_pickle=False`` (dtype, shape and byte order are
in the header), split into chunks of at most ``CHUNK_BYTES``, with a sha256 per array. Per-user and per-item rows
are a fixed little-endian header, a crc32 over the row's key, header and arrays, then the raw arrays: an edited,
truncated or misplaced row fails its checksum instead of being served. Fresh state (``FreshUser``,
``TrendingItem``) is msgpack, so fields may be added with defaults.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec
import numpy as np

from lambdarec.model.rows import FRESH_FORMAT, FreshUser, ItemRow, TrendingItem, UserRow
from lambdarec.store.errors import CorruptRowError

T = TypeVar("T")
Stored = TypeVar("Stored")  # what a row holds as read: its bytes, or (data, erasure)

CHUNK_BYTES = 1 << 20  # 1 MiB: Cassandra is happiest with cells well below its 16 MiB default limit.

_USER_HEADER = struct.Struct("<HII")  # format version, candidates, history
_ITEM_HEADER = struct.Struct("<HI")  # format version, neighbours
_USER_TOP = struct.Struct("<i")  # format 2: the largest item index in the row (-1 if none), so a reader checks
# the row against its catalogue with one comparison instead of scanning the arrays on every request
_CRC = struct.Struct("<I")  # crc32 of key + header + arrays, after the header (format 2)
_FORMAT = 2
_LEGACY_FORMAT = 1  # rows written before checksums: still read, so snapshots published earlier keep serving


def array_to_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes of ``array``; object arrays are refused because they would need pickle."""
    if array.dtype.hasobject:
        raise TypeError(f"refusing to store an object array (dtype {array.dtype}); use fixed-width dtypes")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`array_to_bytes`; never unpickles."""
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise CorruptRowError(f"stored array does not decode as .npy without pickle: {exc}") from exc


def chunk(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """Split ``data`` into pieces of at most ``size`` bytes (at least one piece, possibly empty)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def checksum(data: bytes) -> str:
    """The checksum recorded for an array and checked by ``validate``."""
    return hashlib.sha256(data).hexdigest()


def encode_user_row(
    key: str, candidates: np.ndarray, scores: np.ndarray, history: np.ndarray, history_weights: np.ndarray
) -> bytes:
    """One user's row: candidate item indices (int32) with scores (float32), seen item indices with weights, the
    largest item index, and a crc32 over the user id, the header and the arrays."""
    c = np.asarray(candidates, dtype="<i4")
    s = np.asarray(scores, dtype="<f4")
    h = np.asarray(history, dtype="<i4")
    w = np.asarray(history_weights, dtype="<f4")
    if c.shape != s.shape or h.shape != w.shape or c.ndim != 1 or h.ndim != 1:
        raise ValueError(
            f"user row arrays must be 1-D pairs of equal length; got candidates {c.shape}, scores {s.shape}, "
            f"history {h.shape}, weights {w.shape}"
        )
    top = max(int(c.max()) if c.size else -1, int(h.max()) if h.size else -1)
    header = _USER_HEADER.pack(_FORMAT, c.size, h.size) + _USER_TOP.pack(top)
    return _sealed(_user_key(key), header, c, s, h, w)


def encode_item_row(item: int, neighbours: np.ndarray, scores: np.ndarray) -> bytes:
    """One item's row: neighbour item indices (int32) with similarity scores (float32), and a crc32 as for users."""
    n = np.asarray(neighbours, dtype="<i4")
    s = np.asarray(scores, dtype="<f4")
    if n.shape != s.shape or n.ndim != 1:
        raise ValueError(f"item row arrays must be 1-D and equal length; got {n.shape} and {s.shape}")
    return _sealed(_item_key(item), _ITEM_HEADER.pack(_FORMAT, n.size), n, s)


def encode_user(row: UserRow) -> bytes:
    """:func:`encode_user_row` of a ``UserRow``; a bad row's error names the user."""
    try:
        return encode_user_row(row.user_id, row.candidates, row.scores, row.history, row.history_weights)
    except ValueError as exc:
        raise ValueError(f"user {row.user_id!r}: {exc}") from None


def encode_item(row: ItemRow) -> bytes:
    """:func:`encode_item_row` of an ``ItemRow``; a bad row's error names the item."""
    try:
        return encode_item_row(int(row.item), row.neighbours, row.scores)
    except ValueError as exc:
        raise ValueError(f"item {row.item}: {exc}") from None


def decode_user(user_id: str, data: bytes) -> UserRow:
    """Inverse of :func:`encode_user`; a ``CorruptRowError`` naming the user when the bytes are not its row.

    Checked: the length and the checksum, which is bound to ``user_id`` (a legacy row without one: finite values,
    no negative index). Whether the items fall inside the snapshot's catalogue is :func:`check_user_indices`.
    """
    try:
        if len(data) < _USER_HEADER.size:
            raise CorruptRowError(f"row has {len(data)} bytes, fewer than its header")
        fmt, nc, nh = _USER_HEADER.unpack_from(data)
        if fmt == _FORMAT and len(data) < _USER_HEADER.size + _USER_TOP.size:
            raise CorruptRowError(f"row has {len(data)} bytes, fewer than its header")
        if fmt == _FORMAT:
            (top,) = _USER_TOP.unpack_from(data, _USER_HEADER.size)
            off = _open(_user_key(user_id), data, _USER_HEADER.size + _USER_TOP.size, 8 * (nc + nh))
        else:
            top, off = None, _open(_user_key(user_id), data, _USER_HEADER.size, 8 * (nc + nh), legacy=fmt)
        c = np.frombuffer(data, "<i4", nc, off)
        s = np.frombuffer(data, "<f4", nc, off + 4 * nc)
        h = np.frombuffer(data, "<i4", nh, off + 8 * nc)
        w = np.frombuffer(data, "<f4", nh, off + 8 * nc + 4 * nh)
        if top is None:
            _check_values((c, h), (s, w))
    except CorruptRowError as exc:
        raise CorruptRowError(f"user {user_id!r}: {exc}", keys=[user_id]) from None
    return UserRow(user_id, c, s, h, w, top_item=top)


def decode_item(item: int, data: bytes) -> ItemRow:
    """Inverse of :func:`encode_item`, checked as :func:`decode_user`."""
    try:
        if len(data) < _ITEM_HEADER.size:
            raise CorruptRowError(f"row has {len(data)} bytes, fewer than its header")
        fmt, n = _ITEM_HEADER.unpack_from(data)
        sealed = fmt == _FORMAT
        off = _open(_item_key(item), data, _ITEM_HEADER.size, 8 * n, legacy=None if sealed else fmt)
        neighbours, scores = np.frombuffer(data, "<i4", n, off), np.frombuffer(data, "<f4", n, off + 4 * n)
        if not sealed:
            _check_values((neighbours,), (scores,))
    except CorruptRowError as exc:
        raise CorruptRowError(f"item {item}: {exc}", keys=[item]) from None
    return ItemRow(item, neighbours, scores)


def decode_users(version: str, pairs: Iterable[tuple[str, bytes]]) -> dict[str, UserRow]:
    """``user_id -> UserRow`` of stored ``(user_id, data)`` pairs; any corrupt row raises one ``CorruptRowError``
    that names the corrupt users (``keys``) and carries every other row (``rows``)."""
    return _decode_many(version, "user", pairs, decode_user)


def decode_items(version: str, pairs: Iterable[tuple[int, bytes]]) -> dict[int, ItemRow]:
    """As :func:`decode_users`, for item rows keyed by item index."""
    return _decode_many(version, "item", pairs, decode_item)


def check_user_indices(row: UserRow, n_items: int) -> None:
    """A ``CorruptRowError`` naming the user unless every item index of ``row`` is in ``[0, n_items)``.

    One comparison for a row read from the store (its header holds its largest index); a scan otherwise.
    """
    top = row.top_item
    if top is None:
        top = max(int(row.candidates.max()) if row.candidates.size else -1,
                  int(row.history.max()) if row.history.size else -1)  # fmt: skip
    if top >= n_items:
        raise CorruptRowError(
            f"user {row.user_id!r}: item index {top} is outside the snapshot's {n_items} items", keys=[row.user_id]
        )


def check_item_indices(row: ItemRow, n_items: int) -> None:
    """A ``CorruptRowError`` naming the item unless it and its neighbours are in ``[0, n_items)``."""
    top = max(int(row.item), int(row.neighbours.max()) if row.neighbours.size else 0)
    if int(row.item) < 0 or top >= n_items:
        raise CorruptRowError(
            f"item {row.item}: item index {top} is outside the snapshot's {n_items} items", keys=[row.item]
        )


def _user_key(user_id: str) -> bytes:
    return b"user\0" + user_id.encode("utf-8", "surrogatepass")


def _item_key(item: int) -> bytes:
    return b"item\0" + str(int(item)).encode()


def _sealed(key: bytes, header: bytes, *arrays: np.ndarray) -> bytes:
    payload = b"".join(a.tobytes() for a in arrays)
    crc = zlib.crc32(payload, zlib.crc32(header, zlib.crc32(key)))
    return b"".join((header, _CRC.pack(crc), payload))


def _open(key: bytes, data: bytes, header_size: int, payload_size: int, legacy: int | None = None) -> int:
    """Where the arrays of a row start, after checking its length and (format 2) its checksum."""
    if legacy is not None:
        if legacy != _LEGACY_FORMAT or len(data) != header_size + payload_size:
            raise CorruptRowError(f"row format {legacy} with {payload_size} payload bytes has {len(data)} bytes")
        return header_size
    off = header_size + _CRC.size
    if len(data) != off + payload_size:
        raise CorruptRowError(f"row of {payload_size} payload bytes has {len(data)} bytes")
    (stored,) = _CRC.unpack_from(data, header_size)
    view = memoryview(data)
    found = zlib.crc32(view[off:], zlib.crc32(view[:header_size], zlib.crc32(key)))
    if found != stored:
        raise CorruptRowError(f"checksum {found:08x} where {stored:08x} was written (edited or misplaced row)")
    return off


def _check_values(indices: tuple[np.ndarray, ...], floats: tuple[np.ndarray, ...]) -> None:
    if any(idx.size and int(idx.min()) < 0 for idx in indices):
        raise CorruptRowError("a negative item index")
    if any(not np.isfinite(f).all() for f in floats):
        raise CorruptRowError("a score or weight that is not finite")


def _decode_many(
    version: str, kind: str, pairs: Iterable[tuple[Any, bytes]], decode: Callable[[Any, bytes], Any]
) -> Any:
    rows, bad = {}, {}
    for key, data in pairs:
        try:
            rows[key] = decode(key, data)
        except CorruptRowError as exc:
            bad[key] = str(exc)
    if bad:
        detail = "; ".join(list(bad.values())[:5]) + ("; ..." if len(bad) > 5 else "")
        raise CorruptRowError(
            f"{len(bad)} corrupt {kind} row(s) in snapshot {version}: {detail}", keys=list(bad), rows=rows
        )
    return rows


def join_array(version: str, name: str, pieces: list[bytes], chunks: int, sha256: str) -> np.ndarray:
    """The array stored as ``pieces``, after checking their count and checksum against its index row."""
    data = b"".join(pieces)
    found = checksum(data)
    if len(pieces) != chunks or found != sha256:
        raise CorruptRowError(
            f"array {name!r} of snapshot {version}: {len(pieces)} of {chunks} chunks stored, "
            f"sha256 {found[:12]}... where {sha256[:12]}... was written"
        )
    return array_from_bytes(data)


# ---- fresh state (msgpack) ----------------------------------------------------------------------------------


def encode_fresh(state: FreshUser | TrendingItem) -> bytes:
    return msgspec.msgpack.encode(state)


_FRESH_USER = msgspec.msgpack.Decoder(FreshUser)  # one decoder: no type lookup per row (the speed layer's hot path)


def decode_fresh_user(data: bytes) -> FreshUser:
    """A stored fresh state: format 1 rows (no feedback fields) read with empty feedback; a format newer than
    ``FRESH_FORMAT`` (written by a newer version) is refused, not half-read."""
    state = _FRESH_USER.decode(data)
    if state.format > FRESH_FORMAT:
        raise msgspec.ValidationError(f"fresh state format {state.format}; this version reads 1..{FRESH_FORMAT}")
    return state


def decode_keyed(pairs: Iterable[tuple[str, Stored]], decode: Callable[[Stored], T], what: str) -> dict[str, T]:
    """``user_id -> decode(data)`` of stored pairs; rows that do not decode raise one ``CorruptRowError`` naming
    them (``keys``) and carrying every other row (``rows``), as for snapshot rows."""
    rows, bad = {}, {}
    for user_id, data in pairs:
        try:
            rows[user_id] = decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad[user_id] = f"user {user_id!r}: {what} does not decode: {exc}"
    if bad:
        raise CorruptRowError(f"{len(bad)} corrupt {what} row(s): " + "; ".join(list(bad.values())[:5]),
                              keys=list(bad), rows=rows)  # fmt: skip
    return rows


def decode_trending(data: bytes) -> TrendingItem:
    return msgspec.msgpack.decode(data, type=TrendingItem)
