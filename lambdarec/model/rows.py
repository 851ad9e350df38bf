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


class FreshUser(msgspec.Struct, kw_only=True, weakref=True):
    """The speed layer's state for one user. Stored as msgpack; fields may be added with defaults. Weakly
    referenceable: what ranking derives from a state is kept only while the state lives (lambdarec.rank.memo)."""

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
    # (8-byte hash of an applied event's id, its append second), oldest first, within `events.dedup_window_s` and
    # at most `events.dedup_ids_per_user`: a repeat of the user's own id is found here (speed_layer.seen). A new
    # field with a default: older readers skip it, older rows read it empty.
    seen_ids: list[tuple[int, int]] = []
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
    # ---- a brand-new item (not in the basis snapshot): its users of this partition, each with their summed weight
    # and fold-in vector (solved against `basis`), for its item-step vector (lambdarec.model.fresh_items). Packed
    # (:class:`ShardTerms`): a hot item's shard holds hundreds of users' vectors, and the speed layer reads and
    # writes it every batch, so they travel as raw arrays, not as msgpack floats one by one.
    basis: str | None = None
    # rows of older releases: user -> [summed weight, *vector] ([weight] alone: no vector known yet); packed into
    # the fields below when decoded or built, and never written again
    users: dict[str, list[float]] = {}
    term_users: list[str] = []  # the users, in row order
    term_weights: bytes = b""  # float64 little-endian, one per user
    term_vectors: bytes = b""  # float32 little-endian, [users, f] row-major; a NaN row: no vector known yet

    def __post_init__(self) -> None:
        if self.users:  # an older row, or built from a mapping: packed once
            packed = ShardTerms.of(self.users)
            self.users = {}
            self.term_users, self.term_weights, self.term_vectors = packed.wire()

    @property
    def key(self) -> str:
        """The store key: ``item_id``, or ``item_id@partition`` for a shard."""
        return trending_key(self.item_id, self.partition)

    @property
    def terms(self) -> ShardTerms:
        """The brand-new item's users, weights and vectors as arrays (views of this row's bytes: read-only)."""
        n = len(self.term_users)
        weights = np.frombuffer(self.term_weights, dtype="<f8")
        vectors = np.frombuffer(self.term_vectors, dtype="<f4")
        if weights.size != n or (n and vectors.size % n) or (not n and vectors.size):
            raise msgspec.ValidationError(
                f"trending shard {self.key!r}: {n} term users, {weights.size} weights, {vectors.size} vector values"
            )
        return ShardTerms(list(self.term_users), weights, vectors.reshape(n, vectors.size // n if n else 0))

    def with_terms(self, terms: ShardTerms, **changes: object) -> TrendingItem:
        """This shard holding ``terms`` (packed), with ``changes`` to its other fields."""
        term_users, term_weights, term_vectors = terms.wire()
        return msgspec.structs.replace(self, users={}, term_users=term_users, term_weights=term_weights,
                                       term_vectors=term_vectors, **changes)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ShardTerms:
    """A brand-new item's users in one trending shard: ``weights[i]`` (float64, summed event weight) and
    ``vectors[i]`` (float32 ``[f]``, the fold-in vector; all NaN where none is known yet) belong to ``users[i]``."""

    users: list[str]
    weights: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def with_vector(self) -> np.ndarray:
        """Per user, whether a vector is known (bool ``[n]``)."""
        if not self.vectors.shape[1]:
            return np.zeros(len(self.users), dtype=bool)
        return ~np.isnan(self.vectors[:, 0])

    def index(self) -> dict[str, int]:
        """user -> row."""
        return {u: i for i, u in enumerate(self.users)}

    def as_dict(self) -> dict[str, list[float]]:
        """user -> ``[weight, *vector]`` (``[weight]`` alone where no vector is known), as older rows held them."""
        known = self.with_vector
        return {u: [float(self.weights[i]), *(self.vectors[i].tolist() if known[i] else [])]
                for i, u in enumerate(self.users)}  # fmt: skip

    def select(self, keep: np.ndarray) -> ShardTerms:
        """The users where the bool mask ``keep`` is set."""
        return ShardTerms([u for u, k in zip(self.users, keep.tolist(), strict=True) if k], self.weights[keep],
                          self.vectors[keep])  # fmt: skip

    def wire(self) -> tuple[list[str], bytes, bytes]:
        """The ``term_users``, ``term_weights`` and ``term_vectors`` of a row holding these terms."""
        weights = np.ascontiguousarray(self.weights, dtype="<f8")
        vectors = np.ascontiguousarray(self.vectors, dtype="<f4")
        return list(self.users), weights.tobytes(), vectors.tobytes() if len(self.users) else b""

    @staticmethod
    def of(users: dict[str, list[float]]) -> ShardTerms:
        """From user -> ``[weight, *vector]`` (a row of an older release; ``[weight]``: no vector yet). Vectors of
        one shard share a length (they were solved against one snapshot); a list of another length is taken as
        no vector, as serving always took it."""
        ids = list(users)
        f = max((len(t) - 1 for t in users.values()), default=0)
        vectors = np.full((len(ids), f), np.nan, dtype=np.float32)
        for i, terms in enumerate(users.values()):
            if len(terms) == f + 1 and f:
                vectors[i] = terms[1:]
        weights = np.fromiter((t[0] for t in users.values()), dtype=np.float64, count=len(ids))
        return ShardTerms(ids, weights, vectors)


NO_TERMS = ShardTerms([], np.zeros(0, dtype=np.float64), np.zeros((0, 0), dtype=np.float32))


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
