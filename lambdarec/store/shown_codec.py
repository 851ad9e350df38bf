"""Byte encoding of a user's impressions row (:class:`~lambdarec.model.rows.ShownItems`): msgpack, never pickle."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from lambdarec.model.rows import ShownItems
from lambdarec.store.codec import decode_keyed

decode_shown = msgspec.msgpack.Decoder(ShownItems).decode


def encode_shown(row: ShownItems) -> bytes:
    return msgspec.msgpack.encode(row)


def decode_shown_rows(pairs: Iterable[tuple[str, bytes]]) -> dict[str, ShownItems]:
    """``user_id -> ShownItems``; rows that do not decode raise one ``CorruptRowError`` carrying the others."""
    return decode_keyed(pairs, decode_shown, "impressions")
