"""Scores of the replayed events: ranking metrics per variant, bootstrap intervals over users, coverage, novelty.

Each scored event has one target, the item the user went on to touch. With ``rank`` its 1-based position in a
variant's list (0 when absent), at cut-off ``K``:

- ``hit@K`` = ``recall@K`` = 1 if ``1 <= rank <= K`` (one relevant item, so recall equals the hit rate);
- ``ndcg@K`` = ``1 / log2(rank + 1)`` on a hit (the ideal DCG of one item is 1);
- ``mrr@K`` = ``1 / rank`` on a hit;
- ``coverage@K``: distinct items in the top-K lists over the catalogue size;
- ``novelty@K``: mean self-information ``-log2 p(i)`` of the recommended items, ``p`` from batch popularity.

Point values average over events. Intervals resample **users** with replacement (all of a drawn user's events
come along), seeded, the same draws for every variant, so ratios between variants get paired intervals too.

Example
-------
>>> board = Scoreboard(["batch"], k_max=3)
>>> board.add("u1", 1.0, "b", {"batch": ["a", "b", "c"]})
>>> point_metrics(board.ranks["batch"], 3)["ndcg@3"]
0.6309297535714575
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

METRICS = ("ndcg", "hit", "recall", "mrr")
CONFIDENCE = 0.95


class Scoreboard:
    """What the replay loop records for each scored event: user, staleness, and each variant's list.

    Lists are kept as item codes in one flat int32 buffer per variant (``k_max`` slots per event, -1 where a
    list is shorter), so a weight search over many variants and many events stays small in memory.
    """

    def __init__(self, variants: Sequence[str], k_max: int) -> None:
        self.variants = list(variants)
        self.k_max = k_max
        self._users: dict[str, int] = {}
        self._items: dict[str, int] = {}
        self.user_codes: list[int] = []
        self.hours: list[float] = []
        self.segments: list[str] = []
        self.ranks: dict[str, array[int]] = {v: array("i") for v in self.variants}
        self._lists: dict[str, array[int]] = {v: array("i") for v in self.variants}

    def add(
        self,
        user_id: str,
        hours_since_snapshot: float,
        target: str,
        lists: dict[str, list[str]],
        segment: str = "warm",
    ) -> None:
        """Record one scored event, its user segment (``warm``: in the snapshot, ``cold``: not), and each
        variant's top-``k_max`` list for it."""
        self.user_codes.append(self._users.setdefault(user_id, len(self._users)))
        self.hours.append(hours_since_snapshot)
        self.segments.append(segment)
        for name in self.variants:
            items = lists[name][: self.k_max]
            self.ranks[name].append(items.index(target) + 1 if target in items else 0)
            codes = [self._items.setdefault(i, len(self._items)) for i in items]
            self._lists[name].extend(codes + [-1] * (self.k_max - len(codes)))

    @property
    def events(self) -> int:
        return len(self.user_codes)

    @property
    def users(self) -> int:
        return len(self._users)

    def lists(self, variant: str) -> np.ndarray:
        """``[events, k_max]`` item codes of the variant's lists, -1 past a list's end."""
        return np.frombuffer(self._lists[variant], dtype=np.int32).reshape(-1, self.k_max)

    def item_ids(self) -> list[str]:
        """Item id of each item code used in ``lists``."""
        return list(self._items)

    def subset(self, segment: str) -> Scoreboard:
        """A board with only the events of ``segment``, same variants, item codes and user codes renumbered."""
        out = Scoreboard(self.variants, self.k_max)
        keep = [j for j, s in enumerate(self.segments) if s == segment]
        users = {code: user for user, code in self._users.items()}
        items = self.item_ids()
        for j in keep:
            lists = {}
            for name in self.variants:
                row = self.lists(name)[j]
                lists[name] = [items[c] for c in row.tolist() if c >= 0]
            target_rank = {name: self.ranks[name][j] for name in self.variants}
            out._add_ranked(users[self.user_codes[j]], self.hours[j], segment, lists, target_rank)
        return out

    def _add_ranked(
        self, user_id: str, hours: float, segment: str, lists: dict[str, list[str]], ranks: dict[str, int]
    ) -> None:
        self.user_codes.append(self._users.setdefault(user_id, len(self._users)))
        self.hours.append(hours)
        self.segments.append(segment)
        for name in self.variants:
            self.ranks[name].append(ranks[name])
            codes = [self._items.setdefault(i, len(self._items)) for i in lists[name]]
            self._lists[name].extend(codes + [-1] * (self.k_max - len(codes)))


def event_values(ranks: Sequence[int] | np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-event ``ndcg@k``, ``hit@k``, ``recall@k`` and ``mrr@k`` from 1-based ranks (0 = not in the list)."""
    r = np.asarray(ranks, dtype=np.float64)
    hit = (r >= 1) & (r <= k)
    safe = np.where(hit, r, 1.0)
    return {
        f"ndcg@{k}": np.where(hit, 1.0 / np.log2(safe + 1.0), 0.0),
        f"hit@{k}": hit.astype(np.float64),
        f"recall@{k}": hit.astype(np.float64),
        f"mrr@{k}": np.where(hit, 1.0 / safe, 0.0),
    }


def point_metrics(ranks: Sequence[int] | np.ndarray, k: int) -> dict[str, float]:
    """Mean of each per-event metric at ``k``."""
    return {name: float(v.mean()) if v.size else 0.0 for name, v in event_values(ranks, k).items()}


def user_draws(user_codes: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """``[draws, users]`` counts: how often each user is picked in each bootstrap resample of the users."""
    n = int(user_codes.max()) + 1 if user_codes.size else 0
    if n == 0:
        return np.zeros((draws, 0))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def bootstrap(values: np.ndarray, user_codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The event-mean of ``values`` in each resample given by ``weights`` (see :func:`user_draws`)."""
    n = weights.shape[1]
    sums = np.bincount(user_codes, values, minlength=n)
    counts = np.bincount(user_codes, minlength=n).astype(np.float64)
    denom = weights @ counts
    return np.divide(weights @ sums, denom, out=np.zeros_like(denom), where=denom > 0)


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """The central ``confidence`` percentile interval of bootstrap samples."""
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail]) if samples.size else (0.0, 0.0)
    return [float(lo), float(hi)]


def coverage(lists: np.ndarray, k: int, catalogue: int) -> float:
    """Distinct items in the top-``k`` of ``lists`` (``[events, k_max]`` codes, -1 empty) over the catalogue."""
    top = lists[:, :k]
    return len(np.unique(top[top >= 0])) / catalogue if catalogue else 0.0


def novelty(lists: np.ndarray, k: int, info: np.ndarray) -> float:
    """Mean over non-empty lists of the mean self-information ``info[code]`` of their top-``k`` items."""
    top = lists[:, :k]
    valid = top >= 0
    counts = valid.sum(axis=1)
    if not counts.any():
        return 0.0
    sums = np.where(valid, info[np.where(valid, top, 0)] if info.size else 0.0, 0.0).sum(axis=1)
    return float((sums[counts > 0] / counts[counts > 0]).mean())


def self_information(item_ids: Sequence[str], popularity: dict[str, float]) -> np.ndarray:
    """``-log2 p(i)`` with add-one smoothing, ``p(i) = (pop(i) + 1) / (sum pop + n)``, for each item id."""
    total = sum(popularity.values()) + len(popularity) + 1
    return np.array([-np.log2((popularity.get(i, 0.0) + 1.0) / total) for i in item_ids], dtype=np.float64)


def summarise(
    board: Scoreboard,
    ks: Sequence[int],
    *,
    catalogue: int,
    popularity: dict[str, float],
    draws: int = 1000,
    seed: int = 0,
    baselines: Sequence[str] = ("popular", "batch"),
) -> dict[str, object]:
    """Every metric per variant with its interval, coverage, novelty, and each variant's ratio to the baselines.

    Returns
    -------
    ``{"variants": {name: {"ndcg@10": x, ..., "coverage@10": x, "novelty@10": x, "ci": {"ndcg@10": [lo, hi]}}},
    "ratios": {"lambda/batch": {"ndcg@10": x, ..., "ci": {...}}}, "bootstrap": {...}}``
    """
    users = np.asarray(board.user_codes, dtype=np.int64)
    weights = user_draws(users, draws, seed)
    info = self_information(board.item_ids(), popularity)
    out: dict[str, dict[str, object]] = {}
    samples: dict[str, dict[str, np.ndarray]] = {}
    for name in board.variants:
        entry: dict[str, object] = {}
        ci: dict[str, list[float]] = {}
        samples[name] = {}
        for k in ks:
            for metric, values in event_values(board.ranks[name], k).items():
                entry[metric] = float(values.mean()) if values.size else 0.0
                samples[name][metric] = bootstrap(values, users, weights)
                ci[metric] = interval(samples[name][metric])
            entry[f"coverage@{k}"] = coverage(board.lists(name), k, catalogue)
            entry[f"novelty@{k}"] = novelty(board.lists(name), k, info)
        entry["ci"] = ci
        out[name] = entry
    ratios: dict[str, dict[str, object]] = {}
    for base in baselines:
        for name in board.variants:
            if base not in out or name == base:
                continue
            ratio: dict[str, object] = {}
            ratio_ci: dict[str, list[float]] = {}
            for metric, s in samples[name].items():
                den = float(out[base][metric])  # type: ignore[arg-type]
                ratio[metric] = float(out[name][metric]) / den if den else float("inf")  # type: ignore[arg-type]
                b = samples[base][metric]
                ratio_ci[metric] = interval(np.divide(s, b, out=np.full_like(s, np.inf), where=b > 0))
            ratio["ci"] = ratio_ci
            ratios[f"{name}/{base}"] = ratio
    return {
        "variants": out,
        "ratios": ratios,
        "bootstrap": {"draws": draws, "seed": seed, "confidence": CONFIDENCE, "resampled": "users"},
    }


def staleness(board: Scoreboard, k: int, min_events: int = 1) -> dict[str, object]:
    """``ndcg@k`` and ``hit@k`` per variant in bins of hours since the snapshot's cut-off.

    Bin edges double from one hour: ``[0, 1), [1, 2), [2, 4), ...`` up to the oldest event; bins with fewer than
    ``min_events`` events are left out.
    """
    hours = np.asarray(board.hours, dtype=np.float64)
    if hours.size == 0:
        return {"k": k, "bins_hours": [], "events": [], "variants": {}}
    top = max(float(hours.max()), 1.0)
    edges = [0.0, 1.0]
    while edges[-1] <= top:
        edges.append(edges[-1] * 2)
    which = np.digitize(hours, edges[1:-1])
    bins, counts = [], []
    per: dict[str, dict[str, list[float]]] = {v: {f"ndcg@{k}": [], f"hit@{k}": []} for v in board.variants}
    values = {v: event_values(board.ranks[v], k) for v in board.variants}
    for b in range(len(edges) - 1):
        mask = which == b
        if int(mask.sum()) < min_events:
            continue
        bins.append([edges[b], edges[b + 1]])
        counts.append(int(mask.sum()))
        for v in board.variants:
            for metric in per[v]:
                per[v][metric].append(float(values[v][metric][mask].mean()))
    return {"k": k, "bins_hours": bins, "events": counts, "variants": per}
