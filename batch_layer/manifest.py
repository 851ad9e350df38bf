"""The snapshot's manifest: what a published version was built from (inputs, window, settings, libraries, host)
and the fingerprints that let a rerun on the same inputs and settings publish nothing.

Example
-------
>>> len(config_hash(BatchSettings())), config_hash(BatchSettings(threads=3)) == config_hash(BatchSettings())
(16, True)
"""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import datetime
from importlib import metadata
from typing import Any

import polars as pl

from batch_layer.interactions import ReadReport
from batch_layer.matrix import Interactions
from lambdarec.model.factors import Factors
from lambdarec.settings import BatchSettings, Settings
from lambdarec.store import OnlineStore

# Settings that do not change what the job computes, so they do not enter the config hash.
_NOT_IN_CONFIG_HASH = {"interactions", "source", "threads", "engine", "lock_ttl_s", "device", "ray"}


def config_hash(batch: BatchSettings) -> str:
    """A hash of the settings that shape the snapshot (paths, threads and placement left out)."""
    data = batch.model_dump(mode="json", exclude=_NOT_IN_CONFIG_HASH)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(files_fp: str, frame: pl.DataFrame) -> str:
    """The inputs as the model sees them: the files' content plus the window actually kept."""
    summary = f"{files_fp}:{frame.height}:{frame['ts'].min()}:{frame['ts'].max()}:{frame['weight'].sum():.6f}"
    return hashlib.sha256(summary.encode()).hexdigest()[:32]


def current_manifest(store: OnlineStore) -> dict[str, Any] | None:
    """The current snapshot's manifest with its ``version``; None when nothing is published."""
    version = store.current_version(max_age_s=0)
    if version is None:
        return None
    return {**(store.get_snapshot(version).manifest or {}), "version": version}


def build_manifest(
    settings: Settings,
    report: ReadReport,
    data: Interactions,
    frame: pl.DataFrame,
    as_of: datetime,
    data_fp: str,
    chash: str,
    gate: dict[str, Any],
    factors: Factors,
) -> dict[str, Any]:
    """The manifest of the snapshot built from ``frame`` (the job adds the gate, timings and version)."""
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
        "libraries": library_versions(),
        "host": socket.gethostname(),
    }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the model, as installed here."""
    out = {}
    for name in ("lambdarec", "numpy", "scipy", "polars", "implicit", "faiss-cpu", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
