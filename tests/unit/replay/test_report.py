"""The replay's JSON document, stdout table and self-contained HTML report, from a recorded run."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lambdarec.rank.merge import MergeWeights
from replay.metrics import Scoreboard
from replay.protocol import ReplayConfig, ReplayRun
from replay.report import build_report, format_table, render_html, write_report
from replay.variants import standard_variants


def _run() -> ReplayRun:
    variants = standard_variants(MergeWeights())
    board = Scoreboard([v.name for v in variants], k_max=20)
    items = [f"i{i}" for i in range(40)]
    for n in range(120):
        target = items[n % 40]
        lists = {
            "popular": items[:20],
            "batch": items[20:40],
            "batch+speed": [target, *items[:19]] if n % 3 else items[20:40],
            "lambda": [target, *items[:19]] if n % 2 else items[:20],
        }
        board.add(f"u{n % 13}", n * 0.7, target, lists, segment="cold" if n % 13 == 0 else "warm")
    split = datetime(2024, 1, 20, tzinfo=UTC)
    return ReplayRun(
        config=ReplayConfig("log.parquet", split_at=split, sample=120, seed=1, bootstrap_draws=50),
        variants=variants,
        board=board,
        snapshots=[{"version": "v1", "as_of": split.isoformat()}],
        catalogue=40,
        popularity={item: float(40 - i) for i, item in enumerate(items)},
        events_replayed=500,
        events_novel=300,
        warmup_events=10,
        until_ms=int(split.timestamp() * 1000) + 86_400_000,
        timings_s={"load": 0.1, "batch": 1.0, "replay": 2.0},
    )


def test_document_shape() -> None:
    doc = build_report(_run())
    assert list(doc["variants"]) == ["popular", "batch", "batch+speed", "lambda"]
    lam = doc["variants"]["lambda"]
    for key in ("ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20", "coverage@10", "novelty@20"):
        assert key in lam
    assert set(lam["ci"]) >= {"ndcg@10", "hit@20", "mrr@20"}
    assert doc["events_scored"] == 120 and doc["users"] == 13
    assert "lambda/batch" in doc["ratios"] and "lambda/popular" in doc["ratios"]
    json.dumps(doc)  # plain data all the way down


def test_table_lists_every_variant_and_the_ratio() -> None:
    text = format_table(build_report(_run()))
    for name in ("popular", "batch", "batch+speed", "lambda", "ndcg@10", "ndcg@20", "lambda/batch ndcg@10"):
        assert name in text


def test_html_is_one_file_with_three_inline_plots(tmp_path: Path) -> None:
    doc = build_report(_run())
    html_path, json_path = write_report(doc, tmp_path / "out")
    page = html_path.read_text(encoding="utf-8")
    assert json.loads(json_path.read_text())["events_scored"] == 120
    for figure in ("plot-metrics", "plot-staleness", "plot-coverage"):
        assert re.search(rf"<figure id='{figure}'><svg", page), figure
    assert "<script" not in page and "<link" not in page and " src=" not in page  # nothing to fetch
    assert render_html(doc) == page  # same figures, same bytes


def test_segments_split_the_events_by_whether_the_snapshot_knew_the_user(tmp_path: Path) -> None:
    doc = build_report(_run())
    assert set(doc["segments"]) == {"warm", "cold"}
    assert doc["segment_events"]["cold"] == {"events": 10, "users": 1}  # u0: every 13th event
    assert doc["segment_events"]["warm"] == {"events": 110, "users": 12}
    for segment in ("warm", "cold"):
        lam = doc["segments"][segment]["lambda"]
        assert "ndcg@10" in lam and "ndcg@10" in lam["ci"]
        assert "lambda/batch" in doc["segment_ratios"][segment]
    # cold events are n = 0, 13, 26, ...: odd n has the target first; even n has items[:20], a hit@10 if n % 40 < 10
    cold_hits = sum(1 for n in range(0, 120, 13) if n % 2 or n % 40 < 10)
    assert doc["segments"]["cold"]["lambda"]["hit@10"] == pytest.approx(cold_hits / 10)
    text = format_table(doc)
    assert "warm (110 events, 12 users) lambda/batch ndcg@10" in text
    page = render_html(doc)
    assert "id='segment-warm'" in page and "id='segment-cold'" in page
