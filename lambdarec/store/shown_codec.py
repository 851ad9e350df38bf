"""Byte encoding of a user's impressions row (:class:`~lambdarec.model.rows.ShownItems`): msgpack, never pickle."""

from __future__ import annotations

import msgspec

from lambdarec.model.rows import ShownItems

decode_shown = msgspec.msgpack.Decoder(ShownItems).decode


def encode_shown(row: ShownItems) -> bytes:
    return msgspec.msgpack.encode(row)
