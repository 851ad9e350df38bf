"""The replay protocol: train on the past, then walk the future one event at a time through the serving code.

1. The batch job runs on the events at or before the split (``run_batch(as_of=split)``) into an embedded SQLite
   store in a temporary folder, and its snapshot is loaded as serving loads it.
2. The speed state is warmed up with the ``speed.recent_ttl_s`` of events before the split, as the running speed
   layer would hold them (recent items and trending; the batch already has their weights).
3. Later events are replayed in event-time order. Before each scored event (every *novel* event, or a seeded
   sample of them) each variant asks for the user's top-K given the state at that moment, and the event's item
   is looked up in each list; then the event is applied through the speed layer's pure functions.
4. With ``rebatch_every_s``, at each period boundary the batch job runs again on every event before it, the new
   snapshot is loaded and every fresh state is rebased on it, as after a nightly flip.

Every variant scores the same events, so their differences are paired, and removes the same seen set (the
user's training history plus every item the user touched before the scored event), so none is flattered by
recommending what the user has already consumed. Each scored event is ``warm`` (its user has a row in the current
snapshot) or ``cold`` (not); the report gives every metric per segment too.

Example
-------
>>> run = run_replay(settings, ReplayConfig("var/log.parquet", split_at=split), standard_variants(w))  # doctest: +SKIP
>>> run.board.events
2000
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from batch_layer.job import run_batch
from lambdarec.events import Event
from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import OnlineStore, open_store
from replay.feedback import FeedbackFeed, load_feedback, with_fatigue_ablation
from replay.log import ReplayLog, load_log, sample_scored
from replay.metrics import Scoreboard
from replay.online import OnlineState
from replay.scoring import BatchScorer, ScoredEvent
from replay.variants import Variant


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay and how; every field is a ``lambdarec replay`` flag with the same default."""

    interactions: str
    split_at: datetime
    until: datetime | None = None
    ks: tuple[int, ...] = (10, 20)
    sample: int | None = None
    seed: int = 0
    rebatch_every_s: float | None = None
    session_gap_s: float = 1800.0
    bootstrap_draws: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"k must be a list of positive cut-offs, e.g. 10,20; got {self.ks}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"sample must be >= 1 events; got {self.sample}")
        if self.rebatch_every_s is not None and self.rebatch_every_s <= 0:
            raise ValueError(f"rebatch period must be > 0 seconds; got {self.rebatch_every_s}")
        if self.until is not None and self.until <= self.split_at:
            raise ValueError(f"until ({self.until.isoformat()}) must be after the split ({self.split_at.isoformat()})")


@dataclass
class ReplayRun:
    """What a replay recorded, ready for :func:`replay.report.build_report`."""

    config: ReplayConfig
    variants: list[Variant]
    board: Scoreboard
    snapshots: list[dict[str, Any]]
    catalogue: int
    popularity: dict[str, float]
    events_replayed: int
    events_novel: int
    warmup_events: int
    until_ms: int
    timings_s: dict[str, float] = field(default_factory=dict)


def run_replay(settings: Settings, config: ReplayConfig, variants: list[Variant]) -> ReplayRun:
    """Run the protocol in the module docstring and record every variant's list for every scored event.

    Raises
    ------
    batch_layer.errors.BadInputError
        The log cannot be read or has nothing before or after the split.
    """
    if not variants:
        raise ValueError("no variant to replay")
    t0 = time.perf_counter()
    log = load_log(config.interactions, settings.batch, split_at=config.split_at, until=config.until)
    feed = FeedbackFeed(load_feedback(config.interactions, settings.batch, log.split_ms, log.until_ms))
    variants = with_fatigue_ablation(variants, feed)  # lambda-no-fatigue when the log holds impressions
    timings = {"load": time.perf_counter() - t0, "batch": 0.0, "replay": 0.0, "replay_cpu": 0.0}
    with tempfile.TemporaryDirectory(prefix="lambdarec-replay-") as tmp:
        work = _work_settings(settings, Path(tmp) / "store")
        with open_store(work) as store:
            model = _snapshot(work, store, config.interactions, config.split_at, config.progress, timings)
            snapshots = [_describe(model)]
            popularity = {
                str(i): float(p) for i, p in zip(model.item_ids.tolist(), model.popularity_all.tolist(), strict=True)
            }
            online = OnlineState(store, model, work.speed, dict(work.batch.event_weights), config.session_gap_s)
            warm = log.before(log.split_ms - int(work.speed.recent_ttl_s * 1000))
            online.prefetch(warm["user_id"].unique().to_list())
            online.apply([_event(row, online.event_weights) for row in warm.iter_rows(named=True)])
            board = _loop(log, online, variants, config, work, store, snapshots, timings, feed)
    return ReplayRun(
        config=config,
        variants=variants,
        board=board,
        snapshots=snapshots,
        catalogue=len(popularity),
        popularity=popularity,
        events_replayed=log.replay.height,
        events_novel=int(log.replay["novel"].sum()),
        warmup_events=warm.height,
        until_ms=log.until_ms,
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )


def _loop(
    log: ReplayLog,
    online: OnlineState,
    variants: list[Variant],
    config: ReplayConfig,
    work: Settings,
    store: OnlineStore,
    snapshots: list[dict[str, Any]],
    timings: dict[str, float],
    feed: FeedbackFeed,
) -> Scoreboard:
    """Score, then apply, every replayed event in event-time order; rebatch at period boundaries."""
    events = log.replay
    scored = np.zeros(events.height, dtype=bool)
    scored[sample_scored(np.flatnonzero(events["novel"].to_numpy()), config.sample, config.seed)] = True
    online.prefetch(events["user_id"].unique().to_list())
    k_max = max(config.ks)
    board = Scoreboard([v.name for v in variants], k_max)

    def record(event: ScoredEvent, lists: dict[str, list[str]]) -> None:
        segment = "warm" if event.row is not None else "cold"
        hours = (event.now_s - online.model.cutoff_s) / 3600.0
        board.add(event.user_id, hours, event.target, lists, segment=segment)

    scorer = BatchScorer(variants, k_max, record)  # fold-ins solved in batches; flushed before each flip
    period_ms = int(config.rebatch_every_s * 1000) if config.rebatch_every_s else None
    boundary = log.split_ms + period_ms if period_ms else None
    t0, cpu0 = time.perf_counter(), time.process_time()  # CPU time too: on a shared machine wall time is not ours
    rows = events.iter_rows(named=True)
    # Per-event algebra is tiny (f x f solves, pool x f products): BLAS threads cost far more than they save.
    limiter = threadpool_limits(limits=1, user_api="blas")
    # What exists now (modules, the snapshot, the log) outlives the loop: the collector's full passes, which the
    # loop's many small objects trigger, need not walk it again and again (about a tenth of the loop's CPU).
    gc.freeze()
    try:
        for position, row in enumerate(
            tqdm(rows, total=events.height, desc="replay", unit="ev", disable=not config.progress)
        ):
            while boundary is not None and row["ts"] > boundary:
                scorer.flush(online)
                t_batch, cpu_batch = time.perf_counter(), time.process_time()
                limiter.restore_original_limits()
                as_of = datetime.fromtimestamp(boundary / 1000, UTC)
                model = _snapshot(work, store, config.interactions, as_of, False, timings)
                # the log file the batch read holds every event replayed so far, as the lake would have archived
                model.manifest["log_positions"] = {"0": online.position}
                online.switch(model)
                limiter = threadpool_limits(limits=1, user_api="blas")
                snapshots.append(_describe(online.model))
                boundary += period_ms  # type: ignore[operator]
                t0 += time.perf_counter() - t_batch  # counted under "batch", not "replay"
                cpu0 += time.process_time() - cpu_batch
            online.apply(feed.until(row["ts"] - 1))  # impressions, dislikes, hides shown before it
            if scored[position]:
                scorer.add(online, row["user_id"], row["item_id"], row["ts"] / 1000.0, row["session_id"])
            online.apply([_event(row, online.event_weights)])
        scorer.flush(online)
    finally:
        gc.unfreeze()
        limiter.restore_original_limits()
    timings["replay"] += time.perf_counter() - t0
    timings["replay_cpu"] += time.process_time() - cpu0
    return board


def _work_settings(settings: Settings, store_dir: Path) -> Settings:
    """The caller's settings with the store pointed at an embedded SQLite store of the replay's own."""
    store = settings.store.model_copy(update={"url": f"sqlite:///{store_dir.resolve()}"})
    return settings.model_copy(update={"store": store})


def _snapshot(
    settings: Settings, store: OnlineStore, source: str, as_of: datetime, progress: bool, timings: dict[str, float]
) -> SnapshotModel:
    """Run the batch job at ``as_of`` (forced: a replay wants a snapshot at every boundary) and load it."""
    t0 = time.perf_counter()
    run_batch(settings, interactions=source, as_of=as_of, force=True, progress=progress, store=store)
    version = store.current_version(max_age_s=0)
    if version is None:  # run_batch raises when it cannot publish; a missing pointer is a store fault
        raise RuntimeError(f"the batch job at {as_of.isoformat()} published no snapshot")
    model = SnapshotModel.load(store, version)
    timings["batch"] += time.perf_counter() - t0
    return model


def _describe(model: SnapshotModel) -> dict[str, Any]:
    counts = model.manifest.get("counts", {})
    return {
        "version": model.version,
        "as_of": model.manifest.get("as_of"),
        "users": counts.get("users"),
        "items": counts.get("items"),
        "interactions": counts.get("interactions"),
        "gate": model.manifest.get("metrics", {}),
    }


def _event(row: dict[str, Any], event_weights: dict[str, float]) -> Event:
    """A log row as the speed layer's event; its weight undoes the type weight the reader multiplied in."""
    event_type = row["event_type"] or ""
    type_weight = event_weights.get(event_type, 1.0) if event_type else 1.0
    weight = float(row["weight"]) / type_weight if type_weight else 0.0
    return Event(
        event_id=f"{row['user_id']}:{row['item_id']}:{row['ts']}",
        user_id=row["user_id"],
        item_id=row["item_id"],
        event_type=event_type,
        timestamp=row["ts"] / 1000.0,
        weight=weight,
        session_id=row["session_id"],
    )


def parse_period(text: str) -> float:
    """A period such as ``1d``, ``12h``, ``30m``, ``90s`` or plain seconds, in seconds.

    Example
    -------
    >>> parse_period("1d"), parse_period("90")
    (86400.0, 90.0)
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"period {text!r} is not a number with an optional unit s, m, h, d or w (e.g. 1d)") from None
    if value <= 0:
        raise ValueError(f"period {text!r} must be > 0")
    return value


def quantile_time(source: str, settings: Settings, fraction: float) -> datetime:
    """A split time with ``fraction`` of the log's events at or before it (0.8 gives an 80/20 split by time)."""
    from batch_layer.interactions import read_interactions

    if not 0 < fraction < 1:
        raise ValueError(f"split fraction must be in (0, 1); got {fraction}")
    far = datetime(9999, 1, 1, tzinfo=UTC)
    frame, _ = read_interactions(source, settings.batch.model_copy(update={"lookback_days": None}), as_of=far)
    ms = int(frame["ts"].sort()[min(int(frame.height * fraction), frame.height - 1)])
    return datetime.fromtimestamp((ms - 1) / 1000, UTC)  # the event at the quantile is the first replayed
