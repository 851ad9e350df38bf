"""The nightly refresh job: interaction log -> trained model -> candidates -> a published snapshot.

Stages (each timed into the manifest): ``load`` (read and clean), ``gate`` (train on all but the newest
``holdout_fraction``, score the holdout against popularity and the current snapshot), ``fit`` (train on
everything), ``candidates`` and ``write`` (streamed per user block into the store), ``neighbours``, ``publish``
(validate and flip). Killed at any moment, the job leaves the previous snapshot current: the new version stays
``writing`` until the flip, and a rerun starts a fresh version.

Example
-------
>>> result = run_batch(Settings.load(), interactions="var/log.parquet")   # doctest: +SKIP
>>> result.manifest["published"], result.manifest["counts"]["users"]
(True, 943)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import polars as pl

from batch_layer import gate as quality_gate
from batch_layer.errors import BadInputError
from batch_layer.gate import QualityGateError
from batch_layer.interactions import (
    Interactions,
    build_matrix,
    empty_window_message,
    index_of,
)
from batch_layer.lake_source import InputPlan, plan_input, read_input
from batch_layer.publish import write_snapshot
from batch_layer.window import data_loss_warnings
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings, Settings
from lambdarec.store import OnlineStore, open_store

log = get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_GATE, EXIT_LOCKED = 0, 1, 2, 3, 4
LOCK_NAME = "batch-job"
# Settings that do not change what the job computes, so they do not enter the config hash.
_NOT_IN_CONFIG_HASH = {"interactions", "source", "threads", "engine", "lock_ttl_s", "device"} | {
    name for name in BatchSettings.model_fields if name.startswith("ray_")
}


class JobLockedError(RuntimeError):
    """Another batch job holds the store's job lock."""

    exit_code = EXIT_LOCKED


@dataclass(frozen=True)
class JobResult:
    """What ``run_batch`` did; ``manifest["published"]`` is False when nothing new was published."""

    manifest: dict[str, Any]
    message: str


def config_hash(batch: BatchSettings) -> str:
    """A hash of the settings that shape the snapshot (paths, threads and placement left out)."""
    data = batch.model_dump(mode="json", exclude=_NOT_IN_CONFIG_HASH)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_batch(
    settings: Settings,
    *,
    interactions: str | None = None,
    as_of: datetime | None = None,
    force: bool = False,
    progress: bool = True,
    store: OnlineStore | None = None,
    lake_version: int | None = None,
) -> JobResult:
    """Run the nightly job once; see the module docstring.

    Raises
    ------
    BadInputError
        The interaction log is missing, malformed, or (with ``on_bad_rows = "fail"``) has a bad row.
    QualityGateError
        The model failed the quality gate (:mod:`batch_layer.gate`) and ``force`` is False.
    JobLockedError
        Another job is running against the same store (``LockLostError``: it took the lock while this job ran,
        which then stopped before publishing).
    """
    batch = settings.batch
    built_at = time.time()
    source = plan_input(settings, interactions, lake_version)  # pins the lake version now
    if batch.engine == "ray":
        from batch_layer.ray_cluster import check_ray_settings

        check_ray_settings(settings.store, batch)  # fail before training, not after
    owned = store is None
    store = store or open_store(settings)
    try:
        with _job_lock(store, batch.lock_ttl_s) as locked:
            return _run_locked(locked, settings, source, as_of, force, progress, built_at)
    finally:
        if owned:
            store.close()


def _run_locked(
    store: OnlineStore,
    settings: Settings,
    source: InputPlan,
    as_of: datetime | None,
    force: bool,
    progress: bool,
    built_at: float,
) -> JobResult:
    batch = settings.batch
    timings: dict[str, float] = {}
    with _stage("load", timings):
        frame, report, read_meta = read_input(source, batch, as_of=as_of)
    as_of = as_of or datetime.fromtimestamp(report.as_of_ms / 1000, UTC)  # default: the newest event
    warnings = data_loss_warnings(report, batch)
    if frame.height == 0:
        raise BadInputError(empty_window_message(report, batch))
    data_fp = _data_fingerprint(report.fingerprint, frame)
    chash = config_hash(batch)
    current = _current_manifest(store)
    if current and not force and current.get("input_fingerprint") == data_fp and current.get("config_hash") == chash:
        msg = f"nothing to do: snapshot {current['version']} was built from the same inputs and config"
        log.info("batch.unchanged", version=current["version"])
        return JobResult({**current, "published": False, "reason": "unchanged"}, msg)

    if batch.tune_every_days is not None:
        from batch_layer.tune import nightly_settings

        with _stage("tune", timings):
            batch, tuning = nightly_settings(frame, batch, current, as_of, progress=progress)
    else:
        tuning = None
    with _stage("gate", timings):
        gate = quality_gate.evaluate(frame, batch, current=current, store=store, progress=progress)
    try:
        decision = quality_gate.decide(gate, batch, force=force)
    except QualityGateError as exc:
        exc.manifest.update(published=False, metrics=gate, current=current and current["version"], warnings=warnings)
        raise

    with _stage("fit", timings):
        data = build_matrix(frame)
        from batch_layer.train import train

        factors = train(data.matrix, batch, show_progress=progress)
    with _stage("popularity", timings):
        from batch_layer.popularity import popularity

        pop = popularity(
            item_index=index_of(frame["item_id"], data.item_ids),
            ts=frame["ts"].to_numpy(),
            weight=frame["weight"].to_numpy(),
            n_items=len(data.item_ids),
            recent_days=batch.popularity_recent_days,
            as_of_ms=report.as_of_ms,
        )
    manifest = _manifest(settings, report, data, frame, as_of, data_fp, chash, gate, factors)
    manifest.update(read_meta, built_at_s=built_at)
    manifest.update(gate=decision, warnings=warnings, tuning=tuning)
    version, stage_times = write_snapshot(
        store, data, factors, pop, manifest, batch, progress=progress, store_settings=settings.store
    )
    timings.update(stage_times)
    manifest.update(version=version, published=True, timings_s={k: round(v, 3) for k, v in timings.items()})
    retired = store.prune(settings.store.keep_versions)
    log.info("batch.published", version=version, users=manifest["counts"]["users"], pruned=retired)
    return JobResult(manifest, f"published snapshot {version}")


def _data_fingerprint(files_fp: str, frame: pl.DataFrame) -> str:
    """The inputs as the model sees them: the files' content plus the window actually kept."""
    summary = f"{files_fp}:{frame.height}:{frame['ts'].min()}:{frame['ts'].max()}:{frame['weight'].sum():.6f}"
    return hashlib.sha256(summary.encode()).hexdigest()[:32]


def _current_manifest(store: OnlineStore) -> dict[str, Any] | None:
    version = store.current_version(max_age_s=0)
    if version is None:
        return None
    return {**(store.get_snapshot(version).manifest or {}), "version": version}


def _manifest(
    settings: Settings,
    report: Any,
    data: Interactions,
    frame: pl.DataFrame,
    as_of: datetime,
    data_fp: str,
    chash: str,
    gate: dict[str, Any],
    factors: Any,
) -> dict[str, Any]:
    batch = settings.batch
    return {
        "as_of": as_of.isoformat(),
        "data_cutoff_s": as_of.timestamp(),
        "window": {
            "start_ms": report.window_start_ms,
            "end_ms": report.as_of_ms,
            "first_event_ms": int(frame["ts"].min()),
            "last_event_ms": int(frame["ts"].max()),
        },
        "input": {"source": report.source, "files": report.files, "read": report.to_dict()},
        "input_fingerprint": data_fp,
        "config_hash": chash,
        "config": batch.model_dump(mode="json"),
        "event_weights": dict(batch.event_weights),
        "model": {
            "kind": factors.model,
            "factors": factors.factors,
            "regularization": factors.solver.regularization,
            "alpha": factors.solver.alpha,
            "exact_fold_in": factors.solver.exact,
        },
        "counts": {
            "users": len(data.user_ids),
            "items": len(data.item_ids),
            "interactions": frame.height,
            "pairs": int(data.matrix.nnz),
            "user_rows": len(data.user_ids),
            "item_rows": len(data.item_ids),
            "bad_rows": report.bad_total,
        },
        "metrics": gate,
        "libraries": _library_versions(),
        "host": socket.gethostname(),
    }


def _library_versions() -> dict[str, str]:
    out = {}
    for name in ("lambdarec", "numpy", "scipy", "polars", "implicit", "faiss-cpu", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("batch.stage", stage=name)
    yield
    timings[name] = time.perf_counter() - t0


class LockLostError(JobLockedError):
    """The job could not renew its lock (another job holds it now, or renewals failed for longer than the TTL);
    it stopped before publishing."""


class _Lease:
    """The job lock as held: renewed by a background thread, which records why it could not renew."""

    def __init__(self, store: OnlineStore, owner: str, ttl_s: float):
        self.store, self.owner, self.ttl_s = store, owner, ttl_s
        self.lost: str | None = None
        self._renewed = time.monotonic()

    def renew(self) -> None:
        try:
            held = self.store.try_lock(LOCK_NAME, self.owner, self.ttl_s)
        except Exception as exc:  # a failed renewal need not kill the job, unless the lock lapses meanwhile
            log.warning("batch.lock_renew_failed", error=str(exc))
            if time.monotonic() - self._renewed > self.ttl_s:
                self.lost = f"no renewal succeeded for {self.ttl_s:g} s (batch.lock_ttl_s), the last: {exc}"
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


class _LeasedStore:
    """The store as the locked job sees it: ``publish`` first renews the lock itself and checks the job still
    holds it, so a theft between two background renewals cannot let it publish beside the new holder."""

    def __init__(self, store: OnlineStore, lease: _Lease):
        self._store, self._lease = store, lease

    def publish(self, version: str, manifest: Any) -> None:
        self._lease.renew()
        self._lease.check()
        self._store.publish(version, manifest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextmanager
def _job_lock(store: OnlineStore, ttl_s: float) -> Iterator[OnlineStore]:
    """Hold the store's job lock, renewed in the background; a killed job's lock lapses after ``ttl_s``.

    Yields the store to use under the lock: its ``publish`` raises ``LockLostError`` (exit 4) once a renewal was
    refused (another job holds the lock) or renewals failed for longer than ``ttl_s``.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not store.try_lock(LOCK_NAME, owner, ttl_s):
        holder = store.lock_holder(LOCK_NAME)
        who, lapses = (f" ({holder[0]})", f"in {holder[1]:.0f} s") if holder else ("", f"{ttl_s:.0f} s after")
        raise JobLockedError(
            f"another batch job{who} holds the lock on this store; it lapses {lapses} unless that job renews it "
            f"(a running job renews it every {ttl_s / 3:.0f} s, a killed one does not; batch.lock_ttl_s = "
            f"{ttl_s:.0f}). Rerun after that, or check `lambdarec snapshots list` for a version in state 'writing'."
        )
    lease = _Lease(store, owner, ttl_s)
    stop = threading.Event()

    def renew() -> None:
        while lease.lost is None and not stop.wait(ttl_s / 3):
            lease.renew()

    thread = threading.Thread(target=renew, name="batch-lock", daemon=True)
    try:  # from here on, whatever happens (an interrupt included), the lock is released
        thread.start()
        yield _LeasedStore(store, lease)  # type: ignore[misc]
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        try:
            store.unlock(LOCK_NAME, owner)
        except Exception as exc:  # it lapses by its TTL; the release must not hide the job's own error (or result)
            log.warning("batch.unlock_failed", error=str(exc), lapses_in_s=ttl_s)
