"""The impressions table of the ``OnlineStore``: per user, the items shown and when (:class:`ShownItems`), apart
from the user's fresh row so the impressions consumer and the positive-event consumer never write one row.
Rows carry the store's fresh TTL, like the fresh state.

Example
-------
>>> store.write_shown([ShownItems(user_id="u1", shown={"i7": [1.7e9]})])   # doctest: +SKIP
1
>>> store.read_shown(["u1"])["u1"].shown                                    # doctest: +SKIP
{'i7': [1700000000.0]}
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from lambdarec.model.rows import ShownItems


class ShownTable(abc.ABC):
    """The impressions table's verbs; every ``OnlineStore`` backend has them (contract: ``tests/integration/store``)."""

    @abc.abstractmethod
    def write_shown(self, rows: Iterable[ShownItems]) -> int:
        """Upsert users' impressions rows (with the store's fresh TTL); returns how many."""

    @abc.abstractmethod
    def read_shown(self, user_ids: Iterable[str]) -> dict[str, ShownItems]:
        """Impressions rows of the given users; absent or expired ones are missing. A row that does not decode
        raises ``CorruptRowError`` carrying the others."""
