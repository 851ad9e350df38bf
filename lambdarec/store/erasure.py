"""The erasure verb of the ``OnlineStore``: each erased user's tombstones written as their rows and into the rows'
``erasure`` column, which the consumers never write, so a consumer's write that read the row before the erasure
cannot undo it: every read sees the row through :mod:`lambdarec.model.erased`.

Example
-------
>>> store.write_erasures([tombstone("u1", time.time(), {0: 17})], [ShownItems(user_id="u1")])   # doctest: +SKIP
1
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import msgspec

from lambdarec.model.erased import masked, masked_shown
from lambdarec.model.rows import FreshUser, ShownItems
from lambdarec.store.codec import decode_fresh_user, decode_keyed
from lambdarec.store.decoded import DecodedStates
from lambdarec.store.shown_codec import decode_shown

Row = tuple[str, bytes | None, bytes | None]  # (user_id, data, erasure) as the stores read them
T = TypeVar("T", FreshUser, ShownItems)


class ErasureWrites(abc.ABC):
    """Every ``OnlineStore`` backend writes erasures (contract: ``tests/integration/store``)."""

    @abc.abstractmethod
    def write_erasures(self, users: Sequence[FreshUser], shown: Sequence[ShownItems], *, rows: bool = True) -> int:
        """Write ``users`` (fresh-state tombstones) and ``shown`` (impressions tombstones) as the users' rows and
        as their ``erasure``, and list the users as erased; returns how many users. A tombstone's
        ``erasure_seen`` must be set. ``rows=False`` keeps a row that exists (only its erasure is written: a state
        that saw the erasure stays as it is, one that did not is masked), for erasures written again."""


def fresh_rows(rows: Iterable[Row], decoded: DecodedStates[FreshUser] | None = None) -> dict[str, FreshUser]:
    """``user_id -> FreshUser`` of stored ``(user_id, data, erasure)`` rows, each seen through its erasure; rows
    that do not decode raise one ``CorruptRowError`` carrying the others. ``decoded``: the states decoded before,
    kept by their bytes (:mod:`lambdarec.store.decoded`)."""
    return decode_keyed(((u, (d, e)) for u, d, e in rows), _FRESH if decoded is None else decoded, "fresh state")


def decoded_states(max_bytes: int) -> DecodedStates[FreshUser]:
    """A map of fresh states decoded once while their stored bytes stay the same, of at most ``max_bytes``."""
    return DecodedStates(_FRESH, max_bytes)


def shown_rows(rows: Iterable[Row]) -> dict[str, ShownItems]:
    """:func:`fresh_rows` for impressions rows."""
    return decode_keyed(((u, (d, e)) for u, d, e in rows), _SHOWN, "impressions")


def _decoder(
    decode: Callable[[bytes], T], mask: Callable[[T | None, T | None], T | None]
) -> Callable[[tuple[bytes | None, bytes | None]], T]:
    def decode_row(pair: tuple[bytes | None, bytes | None]) -> T:
        data, erasure = pair
        row = mask(None if data is None else decode(data), None if erasure is None else decode(erasure))
        if row is None:
            raise msgspec.ValidationError("the row holds neither a state nor an erasure")
        return row

    return decode_row


_FRESH, _SHOWN = _decoder(decode_fresh_user, masked), _decoder(decode_shown, masked_shown)  # one each, not per read
