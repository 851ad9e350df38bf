"""The rows the store carries and the math reads: a user's and an item's snapshot rows, the speed layer's fresh
state, and what the store holds for one user. Plain types only: importing them touches no storage module.

Example
-------
>>> row = UserRow("u1", np.array([3, 1], np.int32), np.array([0.9, 0.5], np.float32),
...               np.array([2], np.int32), np.array([1.0], np.float32))
>>> UserState(batch_row=row).fresh is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import numpy as np

LogPosition = tuple[int, int]  # (partition, offset) of a record in the event log


@dataclass(frozen=True)
class UserRow:
    """One user's precomputed row in one snapshot. Item references are indices into the ``item_ids`` array."""

    user_id: str
    candidates: np.ndarray  # int32, best first
    scores: np.ndarray  # float32, same length
    history: np.ndarray  # int32, items the user interacted with in the batch window
    history_weights: np.ndarray  # float32, their confidence weights
    top_item: int | None = field(default=None, compare=False)  # largest item index, when read from the store


@dataclass(frozen=True)
class ItemRow:
    """One item's precomputed neighbours in one snapshot."""

    item: int  # index into item_ids
    neighbours: np.ndarray  # int32, most similar first
    scores: np.ndarray  # float32


class FreshUser(msgspec.Struct, kw_only=True):
    """The speed layer's state for one user. Stored as msgpack; fields may be added with defaults."""

    user_id: str
    events: list[tuple[str, float, float]] = []  # (item_id, event time s, weight) since the basis cut-off
    recent: list[tuple[str, float]] = []  # (item_id, event time s), newest last, bounded
    vector: list[float] | None = None  # fold-in vector
    basis: str | None = None  # snapshot version the vector was solved against
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)
    updated_at: float = 0.0  # event time of the newest applied event
    appended_at: float = 0.0  # log append time (epoch s) of the newest applied event; 0: unknown (older rows)
    # (log partition, offset) of each entry of `events`, same order: a flip drops exactly the entries the new
    # snapshot's log positions cover (older states without it fall back to the snapshot's event-time cut-off)
    event_positions: list[tuple[int, int]] = []
    erased_at: float | None = None  # `forget` time: snapshots built before it must not serve this user's rows
    # the newest `forget` this state was built after (never cleared): a stored erasure newer than it masks the
    # state (lambdarec.model.erased)
    erasure_seen: float | None = None
    # ---- format 2: negative feedback and impressions (lambdarec.rank.feedback); format 1 rows read them empty.
    # Kept across flips: the nightly never trains on them, so no snapshot covers them.
    hidden: dict[str, float] = {}  # item -> event time it was hidden: never recommended to this user again
    disliked: dict[str, float] = {}  # item -> event time: excluded, its nearest neighbours demoted
    shown: dict[str, list[float]] = {}  # item -> event times of its impressions since its last positive event
    format: int = 1  # FRESH_FORMAT when written by this version; rows without the field are format 1


FRESH_FORMAT = 2  # the newest FreshUser format this version reads and writes


class TrendingItem(msgspec.Struct, kw_only=True):
    """Decayed interaction count of one item, in event time.

    The speed layer keeps one shard per (item, log partition): a partition has one consumer at a time, so no
    two consumers ever read-modify-write the same row. Readers add the shards up. The store keys a row by
    :attr:`key`.
    """

    item_id: str
    partition: int = -1  # the log partition this shard counts; -1 for an unsharded count
    count: float = 0.0  # decayed to `as_of`
    as_of: float = 0.0  # event time (s) the count refers to
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)
    appended_at: float = 0.0  # log append time (epoch s) of the newest applied event; 0: unknown (older rows)
    # ---- a brand-new item (not in the basis snapshot): its users of this partition, user -> [summed weight,
    # *fold-in vector] (vector solved against `basis`), for its item-step vector (lambdarec.model.fresh_items)
    basis: str | None = None
    users: dict[str, list[float]] = {}

    @property
    def key(self) -> str:
        """The store key: ``item_id``, or ``item_id@partition`` for a shard."""
        return trending_key(self.item_id, self.partition)


def trending_key(item_id: str, partition: int = -1) -> str:
    """The store key of an item's trending row (see :class:`TrendingItem`)."""
    return item_id if partition < 0 else f"{item_id}@{partition}"


@dataclass(frozen=True, slots=True)
class UserState:
    """What the store holds for one user: the snapshot's precomputed row and the speed layer's fresh state.

    ``corrupt`` says why the user's batch row was left out (it failed its checksum or names items outside the
    snapshot); the user is then served from the fresh state and the fallbacks, marked degraded.
    """

    batch_row: UserRow | None = None
    fresh: FreshUser | None = None
    corrupt: str | None = None


NO_STATE = UserState()


class ShownItems(msgspec.Struct, kw_only=True):
    """A user's impressions, kept apart from their :class:`FreshUser` row when impressions have their own consumer
    (``speed.feedback.own_consumer``): two consumers never write one row. Serving joins the two per request
    (:func:`lambdarec.model.shown.join_shown`). Stored as msgpack; fields may be added with defaults."""

    user_id: str
    shown: dict[str, list[float]] = {}  # item -> event times of its impressions (positives are in the fresh row)
    positions: dict[str, int] = {}  # log partition -> next position to apply (idempotence)
    updated_at: float = 0.0  # event time of the newest applied impression
    erasure_seen: float | None = None  # the newest `forget` this row was built after (lambdarec.model.erased)
