"""The synthetic log: seeded, power-law popular, clustered tastes, sessions, funnel, drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from batch_layer.datasets import write_log
from batch_layer.interactions import read_interactions
from batch_layer.synth import EVENT_TYPES, SynthSpec, synthesize
from lambdarec.settings import BatchSettings

START = datetime(2024, 1, 1, tzinfo=UTC)
SESSION = timedelta(minutes=30)


@pytest.fixture(scope="module")
def log():
    return synthesize(SynthSpec(users=400, items=500, events=40_000, seed=5, clusters=10))


def with_clusters(log) -> pl.DataFrame:
    """Events with the truth: each event's item cluster and its user's index."""
    ev = log.events
    item = ev["item_id"].str.slice(1).cast(pl.Int64).to_numpy()
    return ev.with_columns(cluster=pl.Series(log.item_cluster[item]), user=ev["user_id"].str.slice(1).cast(pl.Int64))


def dominant_cluster(frame: pl.DataFrame) -> dict[int, int]:
    counts = frame.group_by("user", "cluster").len().sort("user", "len", "cluster", descending=[False, True, False])
    return dict(counts.group_by("user", maintain_order=True).first().select("user", "cluster").iter_rows())


def test_same_seed_same_file_and_another_seed_another_file(tmp_path):
    spec = SynthSpec(users=50, items=80, events=3000, seed=11, drift_at=START + timedelta(days=10))
    write_log(synthesize(spec).events, tmp_path / "a.parquet")
    write_log(synthesize(spec).events, tmp_path / "b.parquet")
    write_log(synthesize(SynthSpec(users=50, items=80, events=3000, seed=12)).events, tmp_path / "c.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (tmp_path / "a.parquet").read_bytes() != (tmp_path / "c.parquet").read_bytes()


def test_counts_columns_and_time_range(log):
    ev = log.events
    assert ev.height == 40_000
    assert ev.columns == ["user_id", "item_id", "timestamp", "event_type", "event_id"]
    assert ev["user_id"].n_unique() == 400  # every user acts when there are enough events
    assert ev["event_id"].n_unique() == ev.height
    assert ev["timestamp"].is_sorted()
    assert ev["timestamp"].min() >= START
    assert ev["timestamp"].max() < START + timedelta(days=30, minutes=30)


def test_popularity_is_a_power_law(log):
    counts = np.sort(log.events["item_id"].value_counts()["count"].to_numpy())[::-1]
    share = counts.cumsum() / counts.sum()
    assert share[len(counts) // 10 - 1] > 0.5  # the top 10% of items take over half the events
    assert counts[0] > 20 * np.median(counts)


def test_users_mostly_stay_within_their_taste_clusters(log):
    frame = with_clusters(log)
    tastes = pl.DataFrame(
        {"user": np.repeat(np.arange(len(log.tastes)), log.tastes.shape[1]), "cluster": log.tastes.ravel()}
    ).unique()
    inside = frame.join(tastes, on=["user", "cluster"], how="semi").height / frame.height
    assert inside > 0.85
    # ... and users differ: the most common dominant cluster is far from everyone's.
    dominant = np.array(list(dominant_cluster(frame).values()))
    assert np.bincount(dominant).max() < 0.5 * len(dominant)


def test_events_come_in_sessions_with_a_funnel(log):
    gaps = (
        log.events.sort("user_id", "timestamp")
        .with_columns(gap=pl.col("timestamp").diff().over("user_id"))
        .drop_nulls("gap")["gap"]
    )
    within = (gaps < SESSION).mean()
    assert 0.6 < within < 0.95  # most next events follow within minutes, the rest start a new session
    assert gaps.median() < timedelta(minutes=5)
    mix = log.events["event_type"].value_counts().sort("count", descending=True)
    assert mix["event_type"].to_list() == list(EVENT_TYPES)  # view > click > cart > purchase


def test_drift_moves_users_to_other_clusters_after_the_drift_time():
    drift = START + timedelta(days=15)
    log = synthesize(SynthSpec(users=300, items=400, events=60_000, seed=3, clusters=12, drift_at=drift))
    frame = with_clusters(log)
    before = dominant_cluster(frame.filter(pl.col("timestamp") < drift))
    after = dominant_cluster(frame.filter(pl.col("timestamp") >= drift + SESSION))
    changed = np.mean([before[u] != after[u] for u in before.keys() & after.keys()])
    assert changed > 0.8
    old = {(u, c) for u in range(300) for c in log.tastes[u]}
    assert not any((u, c) in old for u in range(300) for c in log.tastes_after[u])


def test_without_drift_users_keep_their_clusters():
    log = synthesize(SynthSpec(users=300, items=400, events=60_000, seed=3, clusters=12))
    frame = with_clusters(log)
    mid = START + timedelta(days=15)
    before = dominant_cluster(frame.filter(pl.col("timestamp") < mid))
    after = dominant_cluster(frame.filter(pl.col("timestamp") >= mid))
    stayed = np.mean([before[u] == after[u] for u in before.keys() & after.keys()])
    assert stayed > 0.5
    assert log.tastes_after is None


def test_synthetic_log_reads_cleanly_with_event_weights(tmp_path, log):
    write_log(log.events, tmp_path / "log.parquet")
    frame, report = read_interactions(tmp_path / "log.parquet", BatchSettings(), as_of=START + timedelta(days=31))
    assert report.rows_kept == 40_000
    assert report.bad_rows == {}
    assert set(frame["weight"].unique().to_list()) == {1.0, 2.0, 4.0, 8.0}


def test_summary_and_spec_checks(log):
    summary = log.summary()
    assert summary["events"] == 40_000
    assert summary["top_10pct_items_share"] > 0.5
    assert set(summary["event_types"]) == set(EVENT_TYPES)
    assert summary["first"].startswith("2024-01-01")
    with pytest.raises(ValueError, match="events must be >= 1"):
        SynthSpec(users=1, items=1, events=0)
    with pytest.raises(ValueError, match="clusters must be in"):
        SynthSpec(users=1, items=5, events=1, clusters=6)
