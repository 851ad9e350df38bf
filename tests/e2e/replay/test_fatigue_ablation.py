"""Replay on a synthetic log with impressions: the feedback is applied between the scored events, never scored,
and the report carries the fatigue ablation (``lambda`` against ``lambda-no-fatigue`` on the same events)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import Settings
from replay.feedback import FeedbackFeed, load_feedback
from replay.log import load_log, to_ms
from replay.protocol import ReplayConfig, run_replay
from replay.report import build_report
from replay.variants import standard_variants
from tests.e2e.replay.conftest import SPLIT, START

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def impression_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from batch_layer.datasets import write_log
    from batch_layer.synth import SynthSpec, synthesize

    spec = SynthSpec(users=300, items=200, events=12_000, seed=5, days=30, start=START, impressions=3)
    return write_log(synthesize(spec).events, tmp_path_factory.mktemp("fatigue") / "impressions.parquet")


def test_the_synthetic_log_holds_impressions_that_training_leaves_out(impression_log: Path) -> None:
    raw = pl.read_parquet(impression_log)
    shown = raw.filter(pl.col("event_type") == "impression")
    assert shown.height == 3 * raw.filter(pl.col("event_type") != "impression").height
    assert shown["item_ids"].list.len().min() >= 1 and shown["item_ids"].list.len().max() <= 10
    log = load_log(impression_log, Settings.load().batch, split_at=SPLIT)
    assert "impression" not in log.frame["event_type"].unique().to_list()


def test_replay_reports_the_fatigue_ablation(impression_log: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("[batch.train]\nfactors = 16\niterations = 6\n[serving.fatigue]\nafter = 3\n")
    settings = Settings.load(config)
    until = SPLIT + timedelta(days=2)
    feedback = load_feedback(impression_log, settings.batch, to_ms(SPLIT), to_ms(until))
    assert FeedbackFeed(feedback).impressions == feedback.height > 1000
    cfg = ReplayConfig(str(impression_log), split_at=SPLIT, until=until, ks=(10,), progress=False)
    weights = MergeWeights.from_settings(settings.serving)
    run = run_replay(settings, cfg, standard_variants(weights, ["batch", "lambda"]))
    assert [v.name for v in run.variants] == ["batch", "lambda", "lambda-no-fatigue"]
    assert run.variants[2].weights.demote.fatigue_factor == 1.0 and run.variants[1].weights.demote.fatigue_after == 3
    doc = build_report(run)
    v = doc["variants"]
    assert set(v) == {"batch", "lambda", "lambda-no-fatigue"}
    # the same events scored for both: the difference is fatigue alone, and it does change the lists
    assert v["lambda"]["ndcg@10"] != v["lambda-no-fatigue"]["ndcg@10"]
