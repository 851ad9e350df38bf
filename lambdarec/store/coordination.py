"""What processes agree on through the store: which record owns an event id, and who holds a named lock.

Both are atomic per key on every backend, so consumers racing on an event id agree on one owner and two batch
jobs never publish side by side. :class:`~lambdarec.store.port.OnlineStore` carries these verbs.

Example
-------
>>> store.try_lock("batch", owner="host-1:4242", ttl_s=600)    # doctest: +SKIP
True
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Literal

from lambdarec.model.rows import LogPosition

# Claims of one scope never hold an id of another: impressions (ten times the click volume, applied by a consumer
# of their own) are claimed apart from every other event, so the two consumers never share a lock or a partition
# over their claims.
ClaimScope = Literal["events", "impressions"]
ScopedIds = Mapping[ClaimScope, Mapping[str, LogPosition]]  # a poll's ids to claim, by scope


class Coordination(abc.ABC):
    """Event-id claims (the speed layer applies a repeated ``event_id`` once) and named locks with a TTL."""

    # ---- event ids (speed layer: a repeated event_id is applied once) ---------------------------------------

    @abc.abstractmethod
    def claim_event_ids(
        self, claims: Mapping[str, LogPosition], ttl_s: float, scope: ClaimScope = "events"
    ) -> dict[str, LogPosition]:
        """Claim each event id for the log position of the record carrying it, unless a live claim holds it.

        Returns, for every id in ``claims``, the position that owns it now: the one given (a new claim, or the
        same record delivered again after a crash) or the earlier record's (a repeat: skip it). A claim lives
        ``ttl_s`` seconds. Atomic per id, so consumers racing on one id agree on a single owner. ``scope``:
        ``"impressions"`` for impression events, whose claims live apart (see ``ClaimScope``); while claims an
        older release took of both kinds together may still be live, an impression also defers to one of those.
        """

    def claim_event_ids_scoped(self, claims: ScopedIds, ttl_s: float) -> dict[ClaimScope, dict[str, LogPosition]]:
        """:meth:`claim_event_ids` for several scopes at once, each scope's owners. A backend that can run the
        scopes' rounds side by side does (Cassandra: every partition's conditional batch together), and the speed
        consumer calls this: a wrapper that watches claims intercepts both methods."""
        return {scope: self.claim_event_ids(ids, ttl_s, scope) for scope, ids in claims.items()}

    @abc.abstractmethod
    def release_event_ids(self, claims: Mapping[str, LogPosition], scope: ClaimScope = "events") -> None:
        """Drop the claim of each id whose owner is still the position given (its record was dead-lettered
        rather than applied, so a corrected event under the same id may be applied later)."""

    @abc.abstractmethod
    def state_dedup_from(self, window_s: float) -> float:
        """From when (epoch s) the speed consumer may look repeated ids of the ``"events"`` scope up in users'
        states alone (``events.dedup = "auto"``, :mod:`speed_layer.seen`): noted by the first call in the
        namespace and kept for good, 0 where the namespace holds no live claim of that scope, else when the
        claims an older release took may all have expired (``window_s`` on, or the newest claim's expiry where
        the backend can read it). Atomic: consumers starting together read one mark."""

    # ---- coordination -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take the named lock for ``owner`` unless another live owner holds it.

        Parameters
        ----------
        name
            The lock, within this store's namespace (e.g. ``"batch"``).
        owner
            Who takes it; the holder calling again renews it.
        ttl_s
            The lock lapses this long after it was taken or renewed.

        Returns
        -------
        bool
            Whether ``owner`` now holds the lock.
        """

    @abc.abstractmethod
    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it."""

    def lock_holder(self, name: str) -> tuple[str, float] | None:
        """Who holds the named lock and in how many seconds it lapses unless renewed; None when it is free (or
        the backend cannot tell)."""
        return None
