"""A seeded synthetic interaction log that looks like an e-commerce clickstream.

- **Popularity** follows a power law: the item of popularity rank ``r`` has weight ``1 / r**zipf_exponent``.
- **Tastes**: items fall into ``clusters`` (genres); each user likes 1 to ``max_tastes`` of them and draws a
  session's items from one of them, with an ``explore`` share drawn from the whole catalogue.
- **Sessions**: bursts of events seconds apart, at most ``session_max_s`` long, at random times in
  ``[start, start + days)``. Each session keeps to one taste cluster.
- **Funnel**: an event repeats the session's previous item with probability ``repeat``; the n-th touch of
  an item in a row is a view, click, cart, purchase (capped at purchase).
- **Drift** (optional): sessions starting at or after ``drift_at`` use a new set of clusters per user,
  disjoint from the old one where the number of clusters allows.

Everything is vectorised numpy; the same :class:`SynthSpec` always gives the same log, byte for byte.

Example
-------
>>> log = synthesize(SynthSpec(users=100, items=50, events=2000, seed=7))
>>> log.events.columns
['user_id', 'item_id', 'timestamp', 'event_type', 'event_id']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import polars as pl
from tqdm import tqdm

EVENT_TYPES = ("view", "click", "cart", "purchase")
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; every knob has a documented default."""

    users: int
    items: int
    events: int
    seed: int = 42
    days: float = 30.0
    start: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))
    drift_at: datetime | None = None
    clusters: int | None = None
    """Taste clusters; default ``clip(round(sqrt(items) / 2), 2, 64)``, at most ``items``."""
    max_tastes: int = 3
    zipf_exponent: float = 1.0
    explore: float = 0.1
    session_mean_events: float = 6.0
    session_gap_mean_s: float = 45.0
    session_max_s: float = 1800.0
    repeat: float = 0.4
    impressions: int = 0
    """Impression events per positive event (0: none): shown just before it, each listing ``impression_items``
    items of the session's cluster (the event's own item among the first one's), as a product logs its lists."""
    impression_items: int = 10

    def __post_init__(self) -> None:
        for name in ("users", "items", "events"):
            if getattr(self, name) < 1:
                raise ValueError(f"synth {name} must be >= 1; got {getattr(self, name)}")
        if self.days <= 0:
            raise ValueError(f"synth days must be > 0; got {self.days}")
        if self.impressions < 0 or (self.impressions and not 1 <= self.impression_items <= min(self.items, 100)):
            raise ValueError(
                f"synth impressions must be >= 0 and impression_items in [1, min(items, 100)]; got "
                f"{self.impressions}, {self.impression_items}"
            )
        if self.clusters is not None and not 1 <= self.clusters <= self.items:
            raise ValueError(f"synth clusters must be in [1, items={self.items}]; got {self.clusters}")

    @property
    def n_clusters(self) -> int:
        """The number of taste clusters used."""
        if self.clusters is not None:
            return self.clusters
        return int(min(self.items, np.clip(round(np.sqrt(self.items) / 2), 2, 64)))


@dataclass(frozen=True)
class SynthLog:
    """A generated log and the truth behind it.

    ``item_cluster[i]`` is the cluster of item ``f"i{i}"``; ``tastes[u]`` (and ``tastes_after[u]`` past the
    drift) the clusters user ``f"u{u}"`` draws sessions from.
    """

    events: pl.DataFrame
    item_cluster: np.ndarray
    tastes: np.ndarray
    tastes_after: np.ndarray | None
    spec: SynthSpec

    def summary(self) -> dict[str, object]:
        """Counts, time range, event-type mix and the popularity head's share, for a JSON sidecar."""
        ev = self.events
        counts = ev["item_id"].value_counts(sort=True)["count"].to_numpy()
        head = max(1, len(counts) // 10)
        spec = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self.spec).items()}
        return {
            "events": ev.height,
            "users": ev["user_id"].n_unique(),
            "items": ev["item_id"].n_unique(),
            "first": ev["timestamp"].min().isoformat() if ev.height else None,
            "last": ev["timestamp"].max().isoformat() if ev.height else None,
            "event_types": dict(sorted(ev["event_type"].value_counts().iter_rows())),
            "top_10pct_items_share": round(float(counts[:head].sum() / max(1, counts.sum())), 4),
            "clusters": self.spec.n_clusters,
            "spec": spec,
        }


def synthesize(spec: SynthSpec, *, progress: bool = False) -> SynthLog:
    """Generate a log per ``spec``; ``progress`` shows a tqdm bar over the steps on stderr."""
    rng = np.random.default_rng(spec.seed)
    with tqdm(total=5, desc="synth", unit="step", disable=not progress, leave=False) as bar:
        catalogue = _Catalogue.draw(spec, rng)
        tastes = rng.choice(catalogue.n_clusters, size=(spec.users, spec.max_tastes), p=catalogue.cluster_mass)
        n_tastes = rng.integers(1, spec.max_tastes + 1, spec.users)
        bar.update()
        user, new_session, session_start, ts = _sessions(spec, rng)
        bar.update()

        # Each session keeps to one of its user's taste clusters (the drifted set once drift has begun).
        session_user = user[new_session]
        slot = (rng.random(len(session_user)) * n_tastes[session_user]).astype(np.int64)
        session_cluster = tastes[session_user, slot]
        tastes_after = None
        if spec.drift_at is not None:
            tastes_after = _drifted(tastes, catalogue.n_clusters, rng)
            drifted = session_start >= int(spec.drift_at.timestamp() * 1000)
            session_cluster = np.where(drifted, tastes_after[session_user, slot], session_cluster)
        item = catalogue.pick(session_cluster[np.cumsum(new_session) - 1], spec.explore, rng)
        bar.update()

        repeat = ~new_session & (rng.random(spec.events) < spec.repeat)
        index = np.arange(spec.events)
        first_touch = np.maximum.accumulate(np.where(repeat, 0, index))
        touch = np.minimum(index - first_touch, len(EVENT_TYPES) - 1).astype(np.uint8)
        bar.update()
        events = _frame(user, item[first_touch], ts, touch)
        if spec.impressions:
            cluster = session_cluster[np.cumsum(new_session) - 1]
            events = _with_impressions(events, np.argsort(ts, kind="stable"), cluster, catalogue, spec, rng)
        bar.update()
    return SynthLog(events, catalogue.item_cluster, tastes, tastes_after, spec)


@dataclass(frozen=True)
class _Catalogue:
    item_cluster: np.ndarray
    by_cluster: np.ndarray  # item indices ordered by cluster
    cdf: np.ndarray  # popularity CDF over by_cluster
    bounds: np.ndarray  # cluster c spans cdf values [bounds[c], bounds[c + 1])

    @property
    def n_clusters(self) -> int:
        return len(self.bounds) - 1

    @property
    def cluster_mass(self) -> np.ndarray:
        return np.diff(self.bounds)

    @classmethod
    def draw(cls, spec: SynthSpec, rng: np.random.Generator) -> _Catalogue:
        n_c = spec.n_clusters
        item_cluster = rng.permutation(np.arange(spec.items) % n_c).astype(np.int32)
        popularity = 1.0 / (rng.permutation(spec.items) + 1.0) ** spec.zipf_exponent
        by_cluster = np.argsort(item_cluster, kind="stable")
        cdf = np.cumsum(popularity[by_cluster])
        cdf /= cdf[-1]
        last = np.searchsorted(item_cluster[by_cluster], np.arange(n_c), "right") - 1
        return cls(item_cluster, by_cluster, cdf, np.concatenate([[0.0], cdf[last]]))

    def pick(self, cluster: np.ndarray, explore: float, rng: np.random.Generator) -> np.ndarray:
        """One item per event: by popularity within its cluster, or within the catalogue when exploring."""
        wide = rng.random(len(cluster)) < explore
        lo = np.where(wide, 0.0, self.bounds[cluster])
        hi = np.where(wide, 1.0, self.bounds[cluster + 1])
        pick = np.searchsorted(self.cdf, lo + rng.random(len(cluster)) * (hi - lo), side="right")
        return self.by_cluster[np.minimum(pick, len(self.cdf) - 1)]


def _sessions(spec: SynthSpec, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(user per event, session-start flags, start time per session, time per event), users contiguous."""
    # Heavy-tailed activity; every user gets one event when there are enough events to go round.
    activity = rng.lognormal(0.0, 1.0, spec.users)
    base = 1 if spec.events >= spec.users else 0
    counts = base + rng.multinomial(spec.events - base * spec.users, activity / activity.sum())
    user = np.repeat(np.arange(spec.users, dtype=np.int64), counts)
    new_session = rng.random(spec.events) < 1.0 / spec.session_mean_events
    new_session[np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]] = True
    session = np.cumsum(new_session) - 1
    session_user = user[new_session]

    # A user's sessions get sorted random start times, so they follow each other in time.
    offset = rng.integers(0, int(spec.days * _DAY_MS), len(session_user))
    session_start = int(spec.start.timestamp() * 1000) + offset[np.lexsort((offset, session_user))]
    gaps = rng.exponential(spec.session_gap_mean_s * 1000, spec.events).astype(np.int64)
    gaps[new_session] = 0
    within = np.cumsum(gaps)
    within -= within[new_session][session]
    ts = session_start[session] + np.minimum(within, int(spec.session_max_s * 1000) - 1)
    return user, new_session, session_start, ts


def _frame(user: np.ndarray, item: np.ndarray, ts: np.ndarray, touch: np.ndarray) -> pl.DataFrame:
    order = np.argsort(ts, kind="stable")
    return pl.DataFrame(
        {
            "user_id": user[order],
            "item_id": item[order],
            "timestamp": pl.Series(ts[order]).cast(pl.Datetime("ms", "UTC")),
            "touch": touch[order],
        }
    ).select(
        (pl.lit("u") + pl.col("user_id").cast(pl.String)).alias("user_id"),
        (pl.lit("i") + pl.col("item_id").cast(pl.String)).alias("item_id"),
        "timestamp",
        pl.col("touch").replace_strict(dict(enumerate(EVENT_TYPES)), return_dtype=pl.String).alias("event_type"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("event_id"),
    )


def _with_impressions(
    events: pl.DataFrame, order: np.ndarray, cluster: np.ndarray, catalogue: _Catalogue, spec: SynthSpec, rng
) -> pl.DataFrame:
    """``events`` with ``spec.impressions`` impression events before each (``item_ids`` lists the shown items; null
    for the other events), all sorted by time."""
    n, k, m = events.height, spec.impressions, spec.impression_items
    shown = catalogue.pick(np.repeat(cluster[order], k * m), spec.explore, rng).reshape(n * k, m)
    shown[::k, 0] = events["item_id"].str.slice(1).cast(pl.Int64).to_numpy()  # the clicked item was shown
    lists = [[f"i{i}" for i in dict.fromkeys(row)] for row in shown.tolist()]
    ts = events["timestamp"].dt.epoch("ms").to_numpy()
    back = np.tile(np.arange(k, 0, -1, dtype=np.int64), n)  # k ms, k-1 ms, ... before the event
    imp = pl.DataFrame(
        {
            "user_id": np.repeat(events["user_id"].to_numpy(), k),
            "item_id": [row[0] for row in lists],
            "timestamp": pl.Series(np.repeat(ts, k) - back).cast(pl.Datetime("ms", "UTC")),
            "event_type": ["impression"] * (n * k),
            "event_id": pl.int_range(n, n + n * k, dtype=pl.Int64, eager=True),
            "item_ids": pl.Series(lists, dtype=pl.List(pl.String)),
        }
    )
    out = pl.concat([events.with_columns(pl.lit(None, pl.List(pl.String)).alias("item_ids")), imp])
    return out.sort("timestamp", maintain_order=True)


def _drifted(tastes: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """New clusters per user, disjoint from the old ones when there are enough clusters to allow it."""
    after = rng.integers(0, n_clusters, tastes.shape)
    if n_clusters < 2 * tastes.shape[1]:
        return (tastes + 1 + after % max(1, n_clusters - 1)) % n_clusters
    for _ in range(100):  # rejection over all users at once; a few rounds suffice
        clash = (after[:, :, None] == tastes[:, None, :]).any(axis=(1, 2))
        if not clash.any():
            break
        after[clash] = rng.integers(0, n_clusters, (int(clash.sum()), tastes.shape[1]))
    return after
