"""Erasure of users: ``lambdarec forget USER...`` and ``DELETE /v1/users/{user_id}`` call :func:`forget_users`.

In order:

1. the event log's end offsets are read: every event of the user appended before now is "before the erasure";
2. the erasure is recorded in the lake (the archiver drops the user's events before those offsets that it has
   not archived yet, and the batch reader leaves out any row of theirs that predates it);
3. the user's rows are deleted from the lake (a Delta delete: older table versions keep the files until
   ``lambdarec lake vacuum`` removes them, hence the guidance in the result);
4. the user's fresh state is replaced by a tombstone: no events, no vector, the log positions set to the end
   offsets (the speed layer skips the user's older events still in the log), and ``erased_at``. Serving hides
   the user's rows of every snapshot built before ``erased_at`` (a check on read), so nothing personal is
   returned from the moment this returns; a snapshot built afterwards lacks the user and the tombstone stops
   mattering. The tombstone is also kept beside the row (``OnlineStore.write_erasures``): a speed consumer that
   read the user's state before this and writes after it cannot bring the erased history back
   (:mod:`lambdarec.model.erased`); the same holds for the impressions row.

:func:`reapply_erasures` (``lambdarec forget --reapply``) writes every erasure the lake recorded into the store
again, as it was (time and log positions): after the fresh state was cleared to be rebuilt from the log, so
replayed events from before an erasure stay erased.

Example
-------
>>> forget_users(settings, ["u42"]).to_dict()["lake_rows_deleted"]     # doctest: +SKIP
17
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from lambdarec.eventlog import EventLog, IngestLog, open_impressions_log, open_ingest_log
from lambdarec.lake import Lake, open_lake
from lambdarec.model.rows import FreshUser, ShownItems
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, open_store

REAPPLY_CHUNK = 1000  # users per store write when erasures are written again


@dataclass(frozen=True)
class ForgetResult:
    """What ``forget`` did, and what is left to the operator (vacuum)."""

    users: list[str]
    erased_at: float
    lake_version: int | None
    lake_rows_deleted: int
    fresh_states_erased: int
    log_end: dict[str, int]
    vacuum: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def vacuum_guidance(settings: Settings) -> str:
    floor = settings.lake.vacuum_min_retain_hours
    return (
        "the rows are gone from the lake's current version; older versions keep the files until "
        f"`lambdarec lake vacuum --retain-hours {floor:g}` runs {floor:g} h from now (lake.vacuum_min_retain_hours); "
        "older snapshots in the store expire with store.snapshot_ttl_s, `lambdarec snapshots prune` retires them"
    )


def tombstone(user_id: str, erased_at: float, log_end: dict[int, int]) -> FreshUser:
    """The fresh state of an erased user: nothing personal, positions past every event before the erasure."""
    return FreshUser(
        user_id=user_id,
        positions={str(p): n for p, n in log_end.items()},
        updated_at=0.0,
        erased_at=erased_at,
        erasure_seen=erased_at,
    )


def reapply_erasures(settings: Settings, *, store: OnlineStore | None = None, lake: Lake | None = None) -> int:
    """Write the latest erasure of every user the lake recorded into the store again, with its own time and log
    positions, ``REAPPLY_CHUNK`` users a write; a row that exists keeps its state (a state built after the
    erasure stays as it is, one built from events before it is masked). Returns how many users."""
    if lake is None and settings.lake.url is None:
        raise ValueError("erasures are recorded in the lake and no lake is configured (lake.url)")
    lake = lake or open_lake(settings)
    own_store = store is None
    store = store or open_store(settings)
    try:
        erasures = list(lake.erasures().values())
        for n in range(0, len(erasures), REAPPLY_CHUNK):
            chunk = erasures[n : n + REAPPLY_CHUNK]
            shown = [ShownItems(user_id=e.user_id, erasure_seen=e.erased_at,
                                positions={str(p): o for p, o in (e.impressions_end or e.log_end).items()})
                     for e in chunk]  # fmt: skip
            store.write_erasures([tombstone(e.user_id, e.erased_at, e.log_end) for e in chunk], shown, rows=False)
    finally:
        if own_store:
            store.close()
    return len(erasures)


def impressions_end(settings: Settings, log: EventLog) -> dict[int, int] | None:
    """The impressions log's end offsets when impressions have a log of their own (``log.impressions_topic``)."""
    if isinstance(log, IngestLog):
        return log.impressions.end_offsets()
    if settings.log.impressions_topic is None:
        return None
    with open_impressions_log(settings) as own:
        return own.end_offsets()


def forget_users(
    settings: Settings,
    user_ids: list[str],
    *,
    store: OnlineStore | None = None,
    log: EventLog | None = None,
    lake: Lake | None = None,
) -> ForgetResult:
    """Erase ``user_ids`` from the lake, the fresh state and every response (see the module docstring)."""
    users = sorted({u for u in user_ids if u})
    if not users:
        raise ValueError("name at least one non-empty user id to forget")
    own_store, own_log = store is None, log is None
    store = store or open_store(settings)
    log = log or open_ingest_log(settings)
    try:
        erased_at = time.time()
        log_end = log.end_offsets()
        shown_end = impressions_end(settings, log)  # log.impressions_topic's, when impressions have their own log
        version, deleted = None, 0
        if lake is not None or settings.lake.url is not None:
            lake = lake or open_lake(settings)
            lake.record_erasure(users, log_end, shown_end)
            version, deleted = lake.delete_users(users)
        # as the rows and as their erasure, which a consumer's write that read a row before it cannot undo
        # (lambdarec.model.erased); impressions kept apart (speed.feedback.own_consumer): none shown, positions
        # past the erasure in their log
        shown_at = {str(p): n for p, n in (log_end if shown_end is None else shown_end).items()}
        store.write_erasures(
            [tombstone(u, erased_at, log_end) for u in users],
            [ShownItems(user_id=u, positions=shown_at, erasure_seen=erased_at) for u in users],
        )
    finally:
        if own_log:
            log.close()
        if own_store:
            store.close()
    return ForgetResult(
        users=users,
        erased_at=erased_at,
        lake_version=version,
        lake_rows_deleted=deleted,
        fresh_states_erased=len(users),
        log_end={str(p): n for p, n in sorted(log_end.items())},
        vacuum=vacuum_guidance(settings),
    )
