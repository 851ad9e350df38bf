"""What the speed consumer reads from the store for a batch: users' batch rows (cached), their fresh state and the
trending shards (through what the writer is writing).

A corrupt row never stops the consumer: a batch row that fails its checksum or names unknown items is left out
(that user is folded in from fresh events alone), and a fresh state that does not decode is started afresh; both
are logged.
"""

from __future__ import annotations

from collections import OrderedDict

from lambdarec.logs import get_logger
from lambdarec.model.rows import FreshUser, TrendingItem, UserRow
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.store import CorruptRowError, OnlineStore
from lambdarec.store.codec import check_user_indices
from speed_layer.pipeline import StateWriter

log = get_logger(__name__)


class BatchRows:
    """Users' batch rows in the current snapshot, at most ``max_users`` kept (least recently used dropped).

    Published rows never change, so they are cached per version (absent users too) and only the misses are read.
    """

    def __init__(self, store: OnlineStore, max_users: int) -> None:
        self.store, self.max_users = store, max_users
        self._rows: OrderedDict[str, UserRow | None] = OrderedDict()
        self._version: str | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, model: SnapshotModel, user_ids: list[str]) -> dict[str, UserRow]:
        """The batch rows of ``user_ids`` in ``model``'s snapshot (users without one are left out)."""
        if self._version != model.version:
            self._rows, self._version = OrderedDict(), model.version
        missing = [u for u in user_ids if u not in self._rows]
        if missing:
            found = self._read(model, missing)
            for u in missing:
                self._rows[u] = found.get(u)
        out = {}
        for u in user_ids:
            self._rows.move_to_end(u)
            if (row := self._rows[u]) is not None:
                out[u] = row
        while len(self._rows) > self.max_users:
            self._rows.popitem(last=False)
        return out

    def _read(self, model: SnapshotModel, user_ids: list[str]) -> dict[str, UserRow]:
        try:
            found = self.store.read_users(model.version, user_ids)
        except CorruptRowError as exc:
            found, bad = dict(exc.rows), {str(k): str(exc) for k in exc.keys}
        else:
            bad = {}
        for user_id, row in list(found.items()):
            try:
                check_user_indices(row, len(model.item_ids))
            except CorruptRowError as exc:
                del found[user_id]
                bad[user_id] = str(exc)
        if bad:
            log.warning("speed.corrupt_rows", snapshot=model.version, users=sorted(bad)[:20], count=len(bad),
                        reason=next(iter(bad.values())), effect="folded in without their batch history")  # fmt: skip
        return found


def read_fresh_states(store: OnlineStore, user_ids: list[str]) -> dict[str, FreshUser]:
    """The users' fresh state; a state that does not decode is started afresh (logged), never a crash loop."""
    try:
        return store.read_fresh_users(user_ids)
    except CorruptRowError as exc:
        log.error("speed.corrupt_fresh_state", users=[str(k) for k in exc.keys][:20], reason=str(exc),
                  effect="their fresh state restarts from the events being applied")  # fmt: skip
        return dict(exc.rows)


class FreshReads:
    """Users' fresh state and trending shards: what the writer is writing (the newest), else the store's."""

    def __init__(self, store: OnlineStore, writer: StateWriter) -> None:
        self.store, self.writer = store, writer

    def users(self, user_ids: list[str]) -> dict[str, FreshUser]:
        pending = self.writer.pending_users()
        states = read_fresh_states(self.store, [u for u in user_ids if u not in pending])
        states.update((u, pending[u]) for u in user_ids if u in pending)
        return states

    def trending(self, keys: list[str]) -> dict[str, TrendingItem]:
        pending = self.writer.pending_trending()
        shards = self.store.read_trending([k for k in keys if k not in pending])
        shards.update((k, pending[k]) for k in keys if k in pending)
        return shards
