"""Byte encodings of what the store holds: arrays, per-user rows, per-item rows. Never pickle.

Arrays travel as ``.npy`` bytes written and read with ``allow_pickle=False`` (dtype, shape and byte order are
in the header), split into chunks of at most ``CHUNK_BYTES``. Per-user and per-item rows are a fixed little-endian
header followed by raw arrays, so decoding is two ``np.frombuffer`` calls.
"""

from __future__ import annotations

import hashlib
import io
import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lambdarec.store.base import ItemRow, UserRow

CHUNK_BYTES = 1 << 20  # 1 MiB: Cassandra is happiest with cells well below its 16 MiB default limit.

_USER_HEADER = struct.Struct("<HII")  # format version, candidates, history
_ITEM_HEADER = struct.Struct("<HI")  # format version, neighbours
_FORMAT = 1


class CorruptRowError(ValueError):
    """A stored row or array does not decode; the message names what was wrong."""


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
    candidates: np.ndarray, scores: np.ndarray, history: np.ndarray, history_weights: np.ndarray
) -> bytes:
    """One user's row: candidate item indices (int32) with scores (float32), seen item indices with weights."""
    c = np.asarray(candidates, dtype="<i4")
    s = np.asarray(scores, dtype="<f4")
    h = np.asarray(history, dtype="<i4")
    w = np.asarray(history_weights, dtype="<f4")
    if c.shape != s.shape or h.shape != w.shape or c.ndim != 1 or h.ndim != 1:
        raise ValueError(
            f"user row arrays must be 1-D pairs of equal length; got candidates {c.shape}, scores {s.shape}, "
            f"history {h.shape}, weights {w.shape}"
        )
    return b"".join((_USER_HEADER.pack(_FORMAT, c.size, h.size), c.tobytes(), s.tobytes(), h.tobytes(), w.tobytes()))


def decode_user_row(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_user_row`: (candidates, scores, history, history_weights)."""
    if len(data) < _USER_HEADER.size:
        raise CorruptRowError(f"user row has {len(data)} bytes, fewer than its header")
    fmt, nc, nh = _USER_HEADER.unpack_from(data)
    if fmt != _FORMAT or len(data) != _USER_HEADER.size + 8 * (nc + nh):
        raise CorruptRowError(f"user row format {fmt} with {nc} candidates and {nh} seen items has {len(data)} bytes")
    off = _USER_HEADER.size
    c = np.frombuffer(data, "<i4", nc, off)
    s = np.frombuffer(data, "<f4", nc, off + 4 * nc)
    h = np.frombuffer(data, "<i4", nh, off + 8 * nc)
    w = np.frombuffer(data, "<f4", nh, off + 8 * nc + 4 * nh)
    return c, s, h, w


def encode_item_row(neighbours: np.ndarray, scores: np.ndarray) -> bytes:
    """One item's row: neighbour item indices (int32) with similarity scores (float32)."""
    n = np.asarray(neighbours, dtype="<i4")
    s = np.asarray(scores, dtype="<f4")
    if n.shape != s.shape or n.ndim != 1:
        raise ValueError(f"item row arrays must be 1-D and equal length; got {n.shape} and {s.shape}")
    return b"".join((_ITEM_HEADER.pack(_FORMAT, n.size), n.tobytes(), s.tobytes()))


def decode_item_row(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_item_row`: (neighbours, scores)."""
    if len(data) < _ITEM_HEADER.size:
        raise CorruptRowError(f"item row has {len(data)} bytes, fewer than its header")
    fmt, n = _ITEM_HEADER.unpack_from(data)
    if fmt != _FORMAT or len(data) != _ITEM_HEADER.size + 8 * n:
        raise CorruptRowError(f"item row format {fmt} with {n} neighbours has {len(data)} bytes")
    off = _ITEM_HEADER.size
    return np.frombuffer(data, "<i4", n, off), np.frombuffer(data, "<f4", n, off + 4 * n)


def encode_user(row: UserRow) -> bytes:
    """:func:`encode_user_row` of a ``UserRow``; a bad row's error names the user."""
    try:
        return encode_user_row(row.candidates, row.scores, row.history, row.history_weights)
    except ValueError as exc:
        raise ValueError(f"user {row.user_id!r}: {exc}") from None


def encode_item(row: ItemRow) -> bytes:
    """:func:`encode_item_row` of an ``ItemRow``; a bad row's error names the item."""
    try:
        return encode_item_row(row.neighbours, row.scores)
    except ValueError as exc:
        raise ValueError(f"item {row.item}: {exc}") from None


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
