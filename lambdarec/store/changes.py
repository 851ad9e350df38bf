"""Which users' fresh state changed lately: a list a store keeps beside the fresh state (Cassandra), so that a reader
that keeps users' states in memory (serving) reads a state again only once it changed, instead of reading every
user's state on every request.

Every write of fresh state (a speed consumer's poll, an erasure) also lists the users it wrote, as one or a few
rows stamped with the writer's clock (a time UUID), after the states themselves are written: a reader that sees a
change may read the new state at once. A reader asks for the changes stamped after some time, and asks again over a
window that overlaps the last one (rows whose stamp is older than one already seen can land later: a slow write, or
two writers' clocks a little apart), skipping those it saw before by their stamp. A write acknowledged later than
``LANDED_WITHIN_S`` after its stamp is listed again under a new stamp, so that some row of every change lands
within that window.

Example
-------
>>> users = encode_users(["u1", "u2"])
>>> decode_users(users)
['u1', 'u2']
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec

CHANGES_TTL_S = 3600  # how long a change is listed: a reader further behind drops every state it keeps
# A change is listed again, under a new stamp, until one write of it is acknowledged within this long of its stamp:
# a reader that re-reads at least this window (plus the hosts' clock skew) sees every change, however slow a
# write (a stalled node) was to land. Serving's `fresh_changes_overlap_s` must exceed it.
LANDED_WITHIN_S = 1.0
RELIST_TRIES = 5  # at most; past them the change stands as written (and the writer says so)
USERS_PER_ROW = 2000  # users listed per row: one poll of many users is a few rows of tens of KiB
_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder(list[str])


@dataclass(frozen=True, slots=True)
class FreshChange:
    """One listed write: its stamp (a time UUID, unique), the writer's clock at it (seconds since the epoch), and
    the users whose state it wrote (None: a row that does not decode; any user may have changed)."""

    at: uuid.UUID
    at_s: float
    user_ids: list[str] | None


def encode_users(user_ids: list[str]) -> bytes:
    """The users of one row as stored (MessagePack: a list of strings; nothing a reader runs)."""
    return _ENCODE.encode(user_ids)


def decode_users(data: bytes) -> list[str]:
    """The users a stored row lists; ``msgspec.ValidationError``/``DecodeError`` where it is not such a list."""
    return _DECODE.decode(data)


def rows_of(user_ids: list[str]) -> list[list[str]]:
    """``user_ids`` (distinct, in order) as the rows that list them, ``USERS_PER_ROW`` at most each."""
    ids = list(dict.fromkeys(user_ids))
    return [ids[i : i + USERS_PER_ROW] for i in range(0, len(ids), USERS_PER_ROW)]
