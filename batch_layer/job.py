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

import numpy as np
import polars as pl

from batch_layer.errors import BadInputError
from batch_layer.interactions import Interactions, build_matrix, split_holdout
from batch_layer.lake_source import InputPlan, plan_input, read_input
from batch_layer.publish import write_snapshot
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


class QualityGateError(RuntimeError):
    """The new model is worse than the current snapshot by more than ``batch.max_regression``."""

    exit_code = EXIT_GATE

    def __init__(self, message: str, manifest: dict[str, Any]):
        super().__init__(message)
        self.manifest = manifest


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
        The model regressed against the current snapshot and ``force`` is False.
    JobLockedError
        Another job is running against the same store.
    """
    batch = settings.batch
    built_at = time.time()
    source = plan_input(settings, interactions, lake_version)  # pins the lake version now
    if batch.engine == "ray":
        from batch_layer.ray_cluster import check_ray_settings

        check_ray_settings(settings.store, batch)  # fail before training, not after
    as_of = as_of or datetime.now(UTC)
    owned = store is None
    store = store or open_store(settings)
    try:
        with _job_lock(store, batch.lock_ttl_s):
            return _run_locked(store, settings, source, as_of, force, progress, built_at)
    finally:
        if owned:
            store.close()


def _run_locked(
    store: OnlineStore,
    settings: Settings,
    source: InputPlan,
    as_of: datetime,
    force: bool,
    progress: bool,
    built_at: float,
) -> JobResult:
    batch = settings.batch
    timings: dict[str, float] = {}
    with _stage("load", timings):
        frame, report, read_meta = read_input(source, batch, as_of=as_of)
    if frame.height == 0:
        raise BadInputError(f"no interactions left in {report.source} after filtering: {report.to_dict()}")
    data_fp = _data_fingerprint(report.fingerprint, frame)
    chash = config_hash(batch)
    current = _current_manifest(store)
    if current and not force and current.get("input_fingerprint") == data_fp and current.get("config_hash") == chash:
        msg = f"nothing to do: snapshot {current['version']} was built from the same inputs and config"
        log.info("batch.unchanged", version=current["version"])
        return JobResult({**current, "published": False, "reason": "unchanged"}, msg)

    with _stage("gate", timings):
        gate = _evaluate_gate(frame, batch, progress)
    _check_gate(gate, current, batch, force)

    with _stage("fit", timings):
        data = build_matrix(frame)
        from batch_layer.train import train

        factors = train(data.matrix, batch, show_progress=progress)
    with _stage("popularity", timings):
        from batch_layer.popularity import popularity

        pop = popularity(
            item_index=_index_of(frame["item_id"], data.item_ids),
            ts=frame["ts"].to_numpy(),
            weight=frame["weight"].to_numpy(),
            n_items=len(data.item_ids),
            recent_days=batch.popularity_recent_days,
            as_of_ms=report.as_of_ms,
        )
    manifest = _manifest(settings, report, data, frame, as_of, data_fp, chash, gate, factors)
    manifest.update(read_meta, built_at_s=built_at)
    version, stage_times = write_snapshot(
        store, data, factors, pop, manifest, batch, progress=progress, store_settings=settings.store
    )
    timings.update(stage_times)
    manifest.update(version=version, published=True, timings_s={k: round(v, 3) for k, v in timings.items()})
    retired = store.prune(settings.store.keep_versions)
    log.info("batch.published", version=version, users=manifest["counts"]["users"], pruned=retired)
    return JobResult(manifest, f"published snapshot {version}")


def _evaluate_gate(frame: pl.DataFrame, batch: BatchSettings, progress: bool) -> dict[str, Any]:
    from batch_layer.metrics import evaluate_gate
    from batch_layer.popularity import popularity
    from batch_layer.train import train

    train_frame, holdout_frame = split_holdout(frame, batch.holdout_fraction)
    if batch.holdout_fraction == 0 or holdout_frame.height == 0 or train_frame.height == 0:
        return {"skipped": "holdout_fraction is 0 or the window is too small to split"}
    data = build_matrix(train_frame)
    holdout = _project(holdout_frame, data)
    factors = train(data.matrix, batch, show_progress=progress)
    item_idx = _index_of(train_frame["item_id"], data.item_ids)
    pop = popularity(
        item_index=item_idx,
        ts=train_frame["ts"].to_numpy(),
        n_items=len(data.item_ids),
        weight=train_frame["weight"].to_numpy(),
        recent_days=batch.popularity_recent_days,
    )
    metrics = evaluate_gate(
        factors.user_factors,
        factors.item_factors,
        data.matrix,
        holdout,
        batch.gate_k,
        popularity_scores=pop.all_time,
        block=batch.user_block,
        threads=batch.threads,
    )
    k = batch.gate_k
    return {
        "k": k,
        "holdout_events": holdout_frame.height,
        "users": metrics.model.users,
        "model": {f"recall@{k}": round(metrics.model.recall, 6), f"ndcg@{k}": round(metrics.model.ndcg, 6)},
        "popularity": {
            f"recall@{k}": round(metrics.popularity.recall, 6),
            f"ndcg@{k}": round(metrics.popularity.ndcg, 6),
        },
    }


def _check_gate(gate: dict[str, Any], current: dict[str, Any] | None, batch: BatchSettings, force: bool) -> None:
    if "model" not in gate or not current:
        return
    key = f"ndcg@{batch.gate_k}"
    before = current.get("metrics", {}).get("model", {}).get(key)
    now = gate["model"][key]
    if before is None or now >= before * (1 - batch.max_regression):
        return
    message = (
        f"quality gate: model {key} {now:.4f} is more than {batch.max_regression:.0%} below the current snapshot's "
        f"{before:.4f} (popularity baseline {gate['popularity'][key]:.4f}); not publishing. --force overrides."
    )
    if force:
        log.warning("batch.gate_overridden", detail=message)
        return
    raise QualityGateError(message, {"published": False, "metrics": gate, "current": current.get("version")})


def _project(frame: pl.DataFrame, data: Interactions) -> Any:
    """Held-out events as a CSR over the training layout; users or items unseen in training are dropped."""
    import scipy.sparse as sp

    users = _index_of(frame["user_id"], data.user_ids)
    items = _index_of(frame["item_id"], data.item_ids)
    keep = (users >= 0) & (items >= 0)
    ones = np.ones(int(keep.sum()), dtype=np.float32)
    m = sp.csr_matrix((ones, (users[keep], items[keep])), shape=data.shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _index_of(ids: pl.Series, sorted_ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in the id array, -1 where absent (a hash join, fast for millions of rows)."""
    lookup = pl.DataFrame({"_id": sorted_ids.astype(str), "_idx": np.arange(len(sorted_ids), dtype=np.int64)})
    joined = pl.DataFrame({"_id": ids.cast(pl.Utf8)}).join(lookup, on="_id", how="left", maintain_order="left")
    return joined["_idx"].fill_null(-1).to_numpy()


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


@contextmanager
def _job_lock(store: OnlineStore, ttl_s: float) -> Iterator[None]:
    """Hold the store's job lock, renewed in the background; a killed job's lock lapses after ``ttl_s``."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not store.try_lock(LOCK_NAME, owner, ttl_s):
        raise JobLockedError(
            f"another batch job holds the lock on this store; it lapses {ttl_s:.0f} s after that job stops. "
            "Wait for it, or check `lambdarec snapshots list` for a version in state 'writing'."
        )
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                store.try_lock(LOCK_NAME, owner, ttl_s)
            except Exception as exc:  # a failed renewal must not kill the job; the next may succeed
                log.warning("batch.lock_renew_failed", error=str(exc))

    thread = threading.Thread(target=renew, name="batch-lock", daemon=True)
    try:  # from here on, whatever happens (an interrupt included), the lock is released
        thread.start()
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        store.unlock(LOCK_NAME, owner)
