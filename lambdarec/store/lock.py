"""The job lock: one job at a time per store namespace, held through the store's ``try_lock`` and renewed in the
background, so a killed job's lock lapses after its TTL while a running job keeps it.

Example
-------
>>> with hold_job_lock(store, "batch-job", 60.0, ttl_setting="batch.lock_ttl_s") as locked:  # doctest: +SKIP
...     locked.publish(version, manifest)   # raises LockLostError if another job took the lock meanwhile
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lambdarec.logs import get_logger
from lambdarec.store import OnlineStore

log = get_logger(__name__)


class JobLockedError(RuntimeError):
    """Another job holds the store's job lock."""

    exit_code = 4  # what a command refused for the lock exits with (`lambdarec batch run`, deploy/airflow)


class LockLostError(JobLockedError):
    """The job could not renew its lock (another job holds it now, or renewals failed for longer than the TTL);
    it stopped before publishing."""


class Lease:
    """The job lock as held: renewed by a background thread, which records why it could not renew."""

    def __init__(self, store: OnlineStore, name: str, owner: str, ttl_s: float, ttl_setting: str):
        self.store, self.name, self.owner, self.ttl_s, self.ttl_setting = store, name, owner, ttl_s, ttl_setting
        self.lost: str | None = None
        self._renewed = time.monotonic()

    def renew(self) -> None:
        try:
            held = self.store.try_lock(self.name, self.owner, self.ttl_s)
        except Exception as exc:  # a failed renewal need not kill the job, unless the lock lapses meanwhile
            log.warning("batch.lock_renew_failed", error=str(exc))
            if time.monotonic() - self._renewed > self.ttl_s:
                self.lost = f"no renewal succeeded for {self.ttl_s:g} s ({self.ttl_setting}), the last: {exc}"
            return
        if held:
            self._renewed = time.monotonic()
        else:
            self.lost = "another job holds it now"
            log.error("batch.lock_lost", owner=self.owner, effect="the job stops before publishing")

    def check(self) -> None:
        """Raise ``LockLostError`` once the lock is lost."""
        if self.lost is not None:
            raise LockLostError(
                f"the job lost the job lock ({self.lost}); it stopped before publishing, so nothing was published "
                "and the other job's work stands"
            )


class LeasedStore:
    """The store as the locked job sees it: ``publish`` first renews the lock itself and checks the job still
    holds it, so a theft between two background renewals cannot let it publish beside the new holder."""

    def __init__(self, store: OnlineStore, lease: Lease):
        self._store, self._lease = store, lease

    def publish(self, version: str, manifest: Any) -> None:
        self._lease.renew()
        self._lease.check()
        self._store.publish(version, manifest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def hold_job_lock(store: OnlineStore, name: str, ttl_s: float, *, ttl_setting: str) -> Iterator[OnlineStore]:
    """Hold the store's lock ``name``, renewed every ``ttl_s / 3`` in the background; a killed job's lock lapses
    after ``ttl_s`` (the setting ``ttl_setting``, named in errors).

    Yields the store to use under the lock: its ``publish`` raises ``LockLostError`` once a renewal was refused
    (another job holds the lock) or renewals failed for longer than ``ttl_s``.

    Raises
    ------
    JobLockedError
        Another job holds the lock; the message names it and when its lock lapses.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not store.try_lock(name, owner, ttl_s):
        holder = store.lock_holder(name)
        who, lapses = (f" ({holder[0]})", f"in {holder[1]:.0f} s") if holder else ("", f"{ttl_s:.0f} s after")
        raise JobLockedError(
            f"another batch job{who} holds the lock on this store; it lapses {lapses} unless that job renews it "
            f"(a running job renews it every {ttl_s / 3:.0f} s, a killed one does not; {ttl_setting} = "
            f"{ttl_s:.0f}). Rerun after that, or check `lambdarec snapshots list` for a version in state 'writing'."
        )
    lease = Lease(store, name, owner, ttl_s, ttl_setting)
    stop = threading.Event()

    def renew() -> None:
        while lease.lost is None and not stop.wait(ttl_s / 3):
            lease.renew()

    thread = threading.Thread(target=renew, name=f"lock-{name}", daemon=True)
    try:  # from here on, whatever happens (an interrupt included), the lock is released
        thread.start()
        yield LeasedStore(store, lease)  # type: ignore[misc]
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        try:
            store.unlock(name, owner)
        except Exception as exc:  # it lapses by its TTL; the release must not hide the job's own error (or result)
            log.warning("batch.unlock_failed", error=str(exc), lapses_in_s=ttl_s)
