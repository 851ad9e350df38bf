"""The nightly refresh job: interaction log -> trained model -> candidates -> a published snapshot.

Stages (each timed into the manifest): ``load`` (read and clean), ``gate`` (train on all but the newest
``holdout_fraction``, score the holdout against popularity and the current snapshot), ``fit`` (train on
everything), ``candidates`` and ``write`` (streamed per user block into the store), ``neighbours``, ``publish``
(validate and flip). Killed at any moment, the job leaves the previous snapshot current: the new version stays
``writing`` until the flip, and a rerun starts a fresh version. This module only orchestrates: the job lock is
:mod:`lambdarec.store.lock`, the manifest :mod:`batch_layer.manifest`, the quality gate :mod:`batch_layer.gate`.

Example
-------
>>> result = run_batch(Settings.load(), interactions="var/log.parquet")   # doctest: +SKIP
>>> result.manifest["published"], result.manifest["counts"]["users"]
(True, 943)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batch_layer import gate as quality_gate
from batch_layer.errors import BadInputError
from batch_layer.gate import QualityGateError
from batch_layer.interactions import empty_window_message
from batch_layer.lake_source import InputPlan, plan_input, read_input
from batch_layer.manifest import build_manifest, config_hash, current_manifest, data_fingerprint
from batch_layer.matrix import build_matrix
from batch_layer.popularity import frame_popularity
from batch_layer.publish import write_snapshot
from batch_layer.ray_cluster import check_ray_settings
from batch_layer.train import train
from batch_layer.tune import nightly_settings
from batch_layer.window import data_loss_warnings
from lambdarec.logs import get_logger
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, open_store
from lambdarec.store.lock import JobLockedError, LockLostError, hold_job_lock

log = get_logger(__name__)

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_GATE, EXIT_LOCKED = 1, 2, 3, JobLockedError.exit_code
LOCK_NAME = "batch-job"

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_GATE",
    "EXIT_LOCKED",
    "LOCK_NAME",
    "JobLockedError",
    "JobResult",
    "LockLostError",
    "QualityGateError",
    "config_hash",
    "run_batch",
]


@dataclass(frozen=True)
class JobResult:
    """What ``run_batch`` did; ``manifest["published"]`` is False when nothing new was published."""

    manifest: dict[str, Any]
    message: str


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
        check_ray_settings(settings.store, batch)  # fail before training, not after
    owned = store is None
    store = store or open_store(settings)
    try:
        with hold_job_lock(store, LOCK_NAME, batch.lock_ttl_s, ttl_setting="batch.lock_ttl_s") as locked:
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
    data_fp = data_fingerprint(report.fingerprint, frame)
    chash = config_hash(batch)
    current = current_manifest(store)
    if current and not force and current.get("input_fingerprint") == data_fp and current.get("config_hash") == chash:
        msg = f"nothing to do: snapshot {current['version']} was built from the same inputs and config"
        log.info("batch.unchanged", version=current["version"])
        return JobResult({**current, "published": False, "reason": "unchanged"}, msg)

    if batch.tune.every_days is not None:
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
        factors = train(data.matrix, batch, show_progress=progress)
    with _stage("popularity", timings):
        pop = frame_popularity(frame, data.item_ids, batch.popularity_recent_days, as_of_ms=report.as_of_ms)
    manifest = build_manifest(settings, report, data, frame, as_of, data_fp, chash, gate, factors)
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


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("batch.stage", stage=name)
    yield
    timings[name] = time.perf_counter() - t0
