"""The demo's folder: its layout, the interaction log the demo runs on, and the settings file every command reads.

Layout of ``DIR`` (``lambdarec demo --dir DIR``, default ``var/demo``)::

    lambdarec.toml                 settings for every command: store, log, batch, serving, the ingest key's digest
    interactions.parquet           the synthetic log (absent with --interactions), with interactions.summary.json
    store/                         the embedded SQLite online store: snapshots and fresh state
    events/                        the embedded SQLite event log
    logs/speed.log, logs/serve.log what the speed layer and the server wrote
    report/report.html             the replay report, with report.json
    servers.json                   the servers --keep-serving left running (pids, port)

A rerun reuses the folder: the same synthetic log is not rewritten, so the batch job finds nothing to do; the
event log and fresh state carry over. ``--fresh`` wipes the folder first, but only a folder the demo wrote.

Example
-------
>>> ws = Workspace(Path("var/demo"))                              # doctest: +SKIP
>>> log = synthetic_log(ws, SynthSpec(1500, 600, 60_000), settings.batch)  # doctest: +SKIP
>>> log.summary["events"]                                         # doctest: +SKIP
60000
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lambdarec.settings import BatchSettings

MARKER = "# Written by `lambdarec demo`"
SYNTH_DAYS = 30.0
DRIFT_AT = 0.7  # share of the days after which synthetic users change tastes
SPLIT_AT = 2 / 3  # the replay trains on this share of the days: the drift comes after the split
SPLIT_QUANTILE = 0.8  # the replay's split on a log of the caller's: this share of its events
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


class WorkspaceError(ValueError):
    """The demo folder cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Workspace:
    """Paths inside the demo folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "lambdarec.toml"

    @property
    def log(self) -> Path:
        return self.root / "interactions.parquet"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def servers(self) -> Path:
        return self.root / "servers.json"

    def create(self) -> None:
        """Make the folder and its log folder; refuse a file in the way."""
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"--dir {self.root} is a file; name a folder")
        self.logs.mkdir(parents=True, exist_ok=True)

    def wipe(self) -> None:
        """Delete the folder (``--fresh``), but only an empty one or one the demo wrote (its settings file)."""
        if not self.root.exists():
            return
        ours = self.config.is_file() and self.config.read_text().startswith(MARKER)
        if not ours and any(self.root.iterdir()):
            raise WorkspaceError(
                f"--fresh would delete {self.root}, which holds files but no {self.config.name} written by the "
                "demo; pass an empty folder or one an earlier demo run wrote"
            )
        shutil.rmtree(self.root)

    def write_settings(self, *, interactions: str, host: str, port: int, ingest_digest: str) -> Path:
        """Write the settings every command of the demo reads; only the ingest key's SHA-256 digest is stored."""
        quote = json.dumps  # a JSON string is a TOML basic string
        lines = [
            f"{MARKER}; every run rewrites it. Pass it to any command: --config {quote(str(self.config))}",
            "[store]",
            f"url = {quote(sqlite_url(self.store))}",
            "[log]",
            f"url = {quote(sqlite_url(self.events))}",
            "[lake]",
            f"url = {quote(str(self.lake.resolve()))}",
            "[batch]",
            "# the nightly reads the lake; the log file entered it once with `lambdarec lake import`",
            'source = "lake"',
            f"interactions = {quote(interactions)}",
            "[serving]",
            f"host = {quote(host)}",
            f"port = {port}",
            f"ingest_key_hashes = [{quote(ingest_digest)}]",
            "snapshot_poll_s = 2.0",
            "trending_refresh_s = 1.0",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        return self.config


def sqlite_url(path: Path) -> str:
    """``sqlite:////absolute/path``: an embedded backend's URL that works from any working directory."""
    return f"sqlite:///{path.resolve()}"


@dataclass(frozen=True)
class DemoLog:
    """The interaction log the demo runs on, read as the batch job reads it, and what is known about it.

    ``item_cluster`` and ``tastes`` are the synthetic log's truth (None for a log of the caller's): the taste
    cluster of item ``f"i{n}"``, and the clusters user ``f"u{n}"`` drew sessions from before and after the drift.
    """

    source: str
    frame: pl.DataFrame
    end: datetime
    split_at: datetime
    summary: dict[str, Any]
    item_cluster: np.ndarray | None = None
    tastes: np.ndarray | None = None
    reused: bool = False

    def cluster_of(self, item_id: str) -> int:
        """A synthetic item's taste cluster; -1 when unknown."""
        if self.item_cluster is None or not item_id[1:].isdigit() or int(item_id[1:]) >= len(self.item_cluster):
            return -1
        return int(self.item_cluster[int(item_id[1:])])

    def user_tastes(self, user_id: str) -> set[int]:
        """The clusters a synthetic user's sessions may come from, before and after the drift; empty for a log of
        the caller's."""
        if self.tastes is None or not user_id[1:].isdigit():
            return set()
        return {int(c) for c in self.tastes[int(user_id[1:])]}


def synthetic_log(ws: Workspace, spec: Any, batch: BatchSettings, *, progress: bool) -> DemoLog:
    """Synthesise the log for ``spec`` (a :class:`batch_layer.synth.SynthSpec` with a drift) into the folder.

    The log is written only when the folder holds none for the same spec, so a rerun leaves its bytes (and the
    batch job's input fingerprint) as they were.
    """
    from batch_layer.datasets import write_log
    from batch_layer.synth import synthesize

    log = synthesize(spec, progress=progress)
    sidecar = ws.log.with_suffix(".summary.json")
    summary = log.summary()
    reused = ws.log.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()).get("spec") == summary["spec"]
    if not reused:
        write_log(log.events, ws.log)
        sidecar.write_text(json.dumps(summary, indent=2) + "\n")
    frame, end = _read(str(ws.log), batch)
    split = spec.start + timedelta(days=spec.days * SPLIT_AT)
    tastes = log.tastes if log.tastes_after is None else np.concatenate([log.tastes, log.tastes_after], axis=1)
    summary |= {"drift_at": spec.drift_at.isoformat() if spec.drift_at else None, "synthetic": True}
    return DemoLog(str(ws.log), frame, end, split, summary, log.item_cluster, tastes, reused)


def synth_spec(users: int, items: int, events: int, seed: int) -> Any:
    """The demo's synthetic log: 30 days from 2024-01-01 UTC, tastes drifting at 70% of them."""
    from batch_layer.synth import SynthSpec

    start = datetime(2024, 1, 1, tzinfo=UTC)
    drift = start + timedelta(days=SYNTH_DAYS * DRIFT_AT)
    return SynthSpec(users=users, items=items, events=events, seed=seed, days=SYNTH_DAYS, start=start, drift_at=drift)


def callers_log(source: str, batch: BatchSettings) -> DemoLog:
    """A log of the caller's (``--interactions``); the replay splits it at 80% of its events by time."""
    frame, end = _read(source, batch)
    ts = frame["ts"].sort()
    split_ms = int(ts[min(int(frame.height * SPLIT_QUANTILE), frame.height - 1)]) - 1
    summary = {
        "events": frame.height,
        "users": frame["user_id"].n_unique(),
        "items": frame["item_id"].n_unique(),
        "first": _iso(int(ts[0])),
        "last": _iso(int(ts[-1])),
        "synthetic": False,
        "spec": None,
    }
    return DemoLog(source, frame, end, datetime.fromtimestamp(split_ms / 1000, UTC), summary)


def _read(source: str, batch: BatchSettings) -> tuple[pl.DataFrame, datetime]:
    """The whole log as the batch job reads it, and the data cut-off just after its last event."""
    from batch_layer.errors import BadInputError
    from batch_layer.interactions import read_interactions

    frame, _ = read_interactions(source, batch.model_copy(update={"lookback_days": None}), as_of=_FAR)
    if frame.height == 0:
        raise BadInputError(f"{source} holds no usable interactions")
    # A fixed cut-off, not "now": a rerun on the same log is then the same job, and the batch job skips it.
    return frame, datetime.fromtimestamp(int(frame["ts"].max()) // 1000 + 1, UTC)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
