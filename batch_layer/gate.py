"""The quality gate: a new model is published only if, on the job's own holdout, it earns it.

The job holds out the newest ``batch.gate.holdout_fraction`` of its window (by time), trains a candidate on the rest
with the settings it will publish with, and scores each held-out user (known in training, a seeded sample of at
most ``batch.gate.max_users``) on their held-out items not seen in training. Two checks, both on the same users:

1. **Against popularity.** The candidate's NDCG@K must be at least ``batch.gate.min_lift_vs_popular`` times the
   most-popular list's (each user's training items removed from it too).
2. **Against the current snapshot.** The current snapshot's model is re-scored on the same holdout: its stored
   candidate list per user (what serving shows), with the user's training items removed, popular items for a
   user it does not know. Only held-out events newer than its data count: it may have trained on older ones.
   The candidate may not fall more than ``batch.gate.max_regression`` below it there.

A refusal raises :class:`QualityGateError` (exit code 3) with both comparisons in one line; ``--force`` publishes
anyway and the manifest records that it did (``gate.forced``).

Example
-------
>>> gate = evaluate(frame, settings.batch, current=manifest, store=store)   # doctest: +SKIP
>>> decide(gate, settings.batch, force=False)["passed"]                     # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from batch_layer.candidates import iter_candidates
from batch_layer.matrix import Interactions, build_matrix, index_of, split_holdout
from batch_layer.popularity import frame_popularity
from batch_layer.quality_metrics import popular_unseen, user_metrics
from batch_layer.train import train
from lambdarec.logs import get_logger
from lambdarec.settings import BatchSettings
from lambdarec.store import OnlineStore

log = get_logger(__name__)

EXIT_GATE = 3
_READ_CHUNK = 1000


class QualityGateError(RuntimeError):
    """The new model failed the quality gate and ``--force`` was not given."""

    exit_code = EXIT_GATE

    def __init__(self, message: str, manifest: dict[str, Any]):
        super().__init__(message)
        self.manifest = manifest


def evaluate(
    frame: pl.DataFrame,
    batch: BatchSettings,
    *,
    current: dict[str, Any] | None = None,
    store: OnlineStore | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a candidate on all but the holdout and score it, popularity and the current snapshot on it.

    Parameters
    ----------
    frame
        The job's clean window (canonical columns, sorted by ``ts``).
    batch
        The settings the job publishes with (tuned parameters applied).
    current, store
        The current snapshot's manifest (with ``version``) and the store that holds it; None skips check 2.

    Returns
    -------
    dict
        ``{"k", "holdout_events", "users", "model": {...}, "popularity": {...}, "lift_vs_popular", "current":
        {...}}``, or ``{"skipped": reason}`` when the window is too small to split.
    """
    train_frame, holdout_frame = split_holdout(frame, batch.gate.holdout_fraction)
    if batch.gate.holdout_fraction == 0 or holdout_frame.height == 0 or train_frame.height == 0:
        return {"skipped": "holdout_fraction is 0 or the window is too small to split"}
    data = build_matrix(train_frame)
    held = unseen_holdout(holdout_frame, data)
    users = sample_users(held, batch.gate.max_users, batch.seed)
    k = batch.gate.k
    if users.size == 0:
        return {"skipped": "no held-out user was seen in training", "k": k, "holdout_events": holdout_frame.height}
    factors = train(data.matrix, batch, show_progress=progress)
    pop = frame_popularity(train_frame, data.item_ids, batch.popularity_recent_days)
    order = np.argsort(-np.asarray(pop.all_time, dtype=np.float64), kind="stable")
    top = model_top(factors, data.matrix, users, k, batch)
    pop_top = popular_unseen(order, data.matrix[users], k)
    model_recall, model_ndcg = user_metrics(top, held[users], k)
    pop_recall, pop_ndcg = user_metrics(pop_top, held[users], k)
    doc: dict[str, Any] = {
        "k": k,
        "holdout_events": holdout_frame.height,
        "holdout_from_ms": int(holdout_frame["ts"].min()),
        "users": int(users.size),
        "model": _pair(model_recall, model_ndcg, k),
        "popularity": _pair(pop_recall, pop_ndcg, k),
    }
    doc["lift_vs_popular"] = _ratio(doc["model"][f"ndcg@{k}"], doc["popularity"][f"ndcg@{k}"])
    if current and store is not None:
        doc["current"] = _versus_current(current, store, holdout_frame, data, users, top, order, k)
    return doc


def decide(gate: dict[str, Any], batch: BatchSettings, *, force: bool) -> dict[str, Any]:
    """Apply the two checks to :func:`evaluate`'s figures; the record the manifest keeps under ``gate``.

    Raises
    ------
    QualityGateError
        A check failed and ``force`` is False; its message is the one line naming both comparisons.
    """
    if "model" not in gate:
        return {"passed": True, "forced": False, "line": f"quality gate skipped: {gate.get('skipped')}"}
    k = gate["k"]
    key = f"ndcg@{k}"
    checks: dict[str, dict[str, Any]] = {}
    min_lift = batch.gate.min_lift_vs_popular
    lift = gate["lift_vs_popular"]
    pop_ok = min_lift == 0 or lift is None or lift >= min_lift
    checks["popularity"] = {"passed": pop_ok, "lift": lift, "min_lift": min_lift}
    pop_text = (
        f"vs popularity {key} {gate['model'][key]:.4f} / {gate['popularity'][key]:.4f} on {gate['users']} users "
        f"= lift {_fmt(lift)} (batch.gate.min_lift_vs_popular {min_lift:g}: {'ok' if pop_ok else 'FAIL'})"
    )
    cur = gate.get("current")
    if cur and cur.get("users"):
        ours, theirs = cur["model"][key], cur["current"][key]
        cur_ok = ours >= theirs * (1 - batch.gate.max_regression)
        change = _ratio(ours, theirs)
        checks["current"] = {"passed": cur_ok, "change": None if change is None else round(change - 1, 6)}
        cur_text = (
            f"vs current snapshot {cur['version']} re-scored on the same holdout ({cur['users']} users, events "
            f"newer than its data) {key} {ours:.4f} / {theirs:.4f} = {_fmt_change(change)} "
            f"(batch.gate.max_regression {batch.gate.max_regression:.0%}: {'ok' if cur_ok else 'FAIL'})"
        )
    else:
        why = cur.get("skipped") if cur else "no current snapshot"
        checks["current"] = {"passed": True, "skipped": why}
        cur_text = f"vs current snapshot: not compared ({why})"
    passed = all(c["passed"] for c in checks.values())
    verdict = "passed" if passed else ("refused, published anyway (--force)" if force else "refused")
    line = f"quality gate {verdict}: {pop_text}; {cur_text}"
    record = {"passed": passed, "forced": bool(force and not passed), "checks": checks, "line": line}
    if passed:
        log.info("batch.gate_passed", detail=line)
    elif force:
        log.warning("batch.gate_overridden", detail=line)
    else:
        log.warning("batch.gate_refused", detail=line)
        raise QualityGateError(line + "; not publishing (--force publishes anyway)", {"gate": record})
    return record


def unseen_holdout(holdout: pl.DataFrame, data: Interactions) -> sp.csr_matrix:
    """Held-out (user, item) pairs over the training layout, less what the user has in training.

    The tuner (:mod:`batch_layer.tune`) validates with it too, so tuning and gating score alike."""
    users = index_of(holdout["user_id"], data.user_ids)
    items = index_of(holdout["item_id"], data.item_ids)
    keep = (users >= 0) & (items >= 0)
    m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (users[keep], items[keep])), shape=data.shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    m = (m - m.multiply(data.matrix.astype(bool))).tocsr()
    m.eliminate_zeros()
    return m


def sample_users(held: sp.csr_matrix, most: int, seed: int) -> np.ndarray:
    """Rows of ``held`` with at least one item; a seeded sample of ``most`` of them when there are more."""
    users = np.flatnonzero(np.diff(held.indptr))
    if users.size > most:
        users = np.sort(np.random.default_rng(seed).choice(users, size=most, replace=False))
    return users


def model_top(factors: Any, seen: sp.csr_matrix, users: np.ndarray, k: int, batch: BatchSettings) -> np.ndarray:
    """``[len(users), k]`` top unseen items of ``users`` under trained ``factors``, as the batch layer scores."""
    top = np.full((users.size, k), -1, dtype=np.int64)
    where = {int(u): j for j, u in enumerate(users.tolist())}
    for rows, items, _ in iter_candidates(
        factors.user_factors, factors.item_factors, seen, k, batch.user_block, threads=batch.threads, users=users
    ):
        for r, row in zip(rows.tolist(), items, strict=True):
            top[where[int(r)]] = row[:k]
    return top


def _versus_current(
    current: dict[str, Any],
    store: OnlineStore,
    holdout: pl.DataFrame,
    data: Interactions,
    users: np.ndarray,
    model_top: np.ndarray,
    order: np.ndarray,
    k: int,
) -> dict[str, Any]:
    """The candidate and the current snapshot on the held-out events newer than the current snapshot's data."""
    version = current["version"]
    window = current.get("window") or {}
    newest_ms = window.get("last_event_ms")
    if newest_ms is None:
        newest_ms = int(float(current.get("data_cutoff_s", 0.0)) * 1000)
    newer = holdout.filter(pl.col("ts") > newest_ms)
    base: dict[str, Any] = {"version": version, "holdout_events": newer.height, "after_ms": int(newest_ms)}
    if newer.height == 0:
        return {**base, "users": 0, "skipped": f"no held-out event is newer than {version}'s data"}
    held = unseen_holdout(newer, data)[users]
    rows = np.flatnonzero(np.diff(held.indptr))
    if rows.size == 0:
        return {**base, "users": 0, "skipped": f"no held-out user has an event newer than {version}'s data"}
    theirs = _current_lists(store, version, data, users[rows], order, k)
    ours_recall, ours_ndcg = user_metrics(model_top[rows], held[rows], k)
    cur_recall, cur_ndcg = user_metrics(theirs, held[rows], k)
    return {
        **base,
        "users": int(rows.size),
        "model": _pair(ours_recall, ours_ndcg, k),
        "current": _pair(cur_recall, cur_ndcg, k),
    }


def _current_lists(
    store: OnlineStore, version: str, data: Interactions, users: np.ndarray, order: np.ndarray, k: int
) -> np.ndarray:
    """Each user's top-``k`` from the current snapshot's stored candidates, in the new layout; training items
    removed; popular items (the new window's) fill a list that runs short, or stand in for an unknown user."""
    their_items = np.asarray(store.read_array(version, "item_ids")).astype(str)
    pos = np.searchsorted(data.item_ids, their_items)
    pos = np.minimum(pos, len(data.item_ids) - 1)
    to_new = np.where(data.item_ids[pos] == their_items, pos, -1)
    seen = data.matrix[users]
    fill = popular_unseen(order, seen, 2 * k)
    out = np.full((users.size, k), -1, dtype=np.int64)
    ids = data.user_ids[users].tolist()
    for start in range(0, len(ids), _READ_CHUNK):
        chunk = ids[start : start + _READ_CHUNK]
        stored = store.read_users(version, chunk)
        for j, user_id in enumerate(chunk, start=start):
            row = stored.get(user_id)
            picked: list[int] = []
            taken = set(seen.indices[seen.indptr[j] : seen.indptr[j + 1]].tolist())
            if row is not None:
                for i in to_new[np.asarray(row.candidates, dtype=np.int64)].tolist():
                    if i >= 0 and i not in taken:
                        picked.append(i)
                        taken.add(i)
                        if len(picked) == k:
                            break
            for i in fill[j].tolist():
                if len(picked) == k:
                    break
                if i >= 0 and i not in taken:
                    picked.append(i)
                    taken.add(i)
            out[j, : len(picked)] = picked
    return out


def _pair(recall: np.ndarray, ndcg: np.ndarray, k: int) -> dict[str, float]:
    return {f"recall@{k}": round(float(np.nanmean(recall)), 6), f"ndcg@{k}": round(float(np.nanmean(ndcg)), 6)}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b > 0 else None


def _fmt(x: float | None) -> str:
    return "n/a (popularity scores 0)" if x is None else f"{x:.2f}"


def _fmt_change(ratio: float | None) -> str:
    return "n/a (current scores 0)" if ratio is None else f"{ratio - 1:+.1%}"
