"""The users' last store reads (:class:`~lambdarec.model.rows.UserState`), kept in memory to serve personalised
lists while the store is unavailable."""

from __future__ import annotations

import threading
from collections import OrderedDict

from lambdarec.model.rows import UserState


class RecentUsers:
    """A least-recently-used map ``(snapshot version, user id) -> UserState`` of bounded size.

    The version is part of the key: a row's item indices mean something only in its own snapshot.

    Example
    -------
    >>> cache = RecentUsers(2)
    >>> state = UserState()
    >>> cache.put("v1", "u1", state)
    >>> cache.get("v1", "u1") is state, cache.get("v2", "u1")
    (True, None)
    """

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[tuple[str, str], UserState] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, version: str, user_id: str, state: UserState) -> None:
        """Remember ``state``; the least recently used entry goes when the cache is full."""
        if self.size <= 0:
            return
        key = (version, user_id)
        with self._lock:
            self._data[key] = state
            self._data.move_to_end(key)
            if len(self._data) > self.size:
                self._data.popitem(last=False)

    def get(self, version: str, user_id: str) -> UserState | None:
        """The last state read for the user in ``version``, or None."""
        with self._lock:
            state = self._data.get((version, user_id))
            if state is not None:
                self._data.move_to_end((version, user_id))
            return state

    def forget(self, user_id: str) -> None:
        """Drop every remembered state of ``user_id`` (an erasure)."""
        with self._lock:
            for key in [k for k in self._data if k[1] == user_id]:
                del self._data[key]

    def __len__(self) -> int:
        return len(self._data)
