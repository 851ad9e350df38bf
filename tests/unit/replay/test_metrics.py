"""Ranking metrics, bootstrap intervals over users, coverage, novelty and the staleness bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replay.metrics import Scoreboard, coverage, event_values, novelty, point_metrics, staleness, summarise


def test_single_target_metrics_follow_their_formulas() -> None:
    values = event_values([1, 3, 0, 11], k=10)
    assert values["ndcg@10"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert values["mrr@10"].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert values["hit@10"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert values["recall@10"].tolist() == values["hit@10"].tolist()  # one relevant item


def test_scoreboard_ranks_the_target_in_each_list() -> None:
    board = Scoreboard(["a", "b"], k_max=3)
    board.add("u1", 0.5, "x", {"a": ["x", "y", "z"], "b": ["y", "z", "w", "x"]})  # b has x at 4 > k_max
    board.add("u2", 2.0, "z", {"a": ["x", "y", "z"], "b": []})
    assert {name: list(r) for name, r in board.ranks.items()} == {"a": [1, 3], "b": [0, 0]}
    assert board.lists("b").tolist() == [[1, 2, 3], [-1, -1, -1]]  # codes in order first seen: x, y, z, w
    assert board.events == 2 and board.users == 2
    assert point_metrics(board.ranks["a"], 3)["ndcg@3"] == pytest.approx((1 + 0.5) / 2)


def _board(seed: int = 0) -> Scoreboard:
    rng = np.random.default_rng(seed)
    board = Scoreboard(["popular", "batch", "lambda"], k_max=10)
    items = [f"i{i}" for i in range(50)]
    for n in range(400):
        target = items[int(rng.integers(50))]
        lists = {
            "popular": items[:10],
            "batch": list(rng.permutation(items)[:10]),
            "lambda": [target, *items[20:29]] if rng.random() < 0.4 else items[30:40],
        }
        board.add(f"u{n % 37}", float(rng.uniform(0, 100)), target, lists)
    return board


def test_summary_has_every_metric_with_an_interval_around_it() -> None:
    doc = summarise(_board(), [5, 10], catalogue=50, popularity={"i0": 10.0}, draws=200, seed=1)
    lam = doc["variants"]["lambda"]
    for k in (5, 10):
        for metric in ("ndcg", "hit", "recall", "mrr"):
            lo, hi = lam["ci"][f"{metric}@{k}"]
            assert lo <= lam[f"{metric}@{k}"] <= hi
        assert 0 < lam[f"coverage@{k}"] <= 1 and lam[f"novelty@{k}"] > 0
    lo, hi = doc["ratios"]["lambda/batch"]["ci"]["ndcg@10"]
    assert lo <= doc["ratios"]["lambda/batch"]["ndcg@10"] <= hi and lo > 1
    assert doc["bootstrap"]["resampled"] == "users"


def test_same_seed_same_intervals_other_seed_other_intervals() -> None:
    board = _board()
    a = summarise(board, [10], catalogue=50, popularity={}, draws=100, seed=3)
    b = summarise(board, [10], catalogue=50, popularity={}, draws=100, seed=3)
    c = summarise(board, [10], catalogue=50, popularity={}, draws=100, seed=4)
    assert a == b
    assert a["variants"]["lambda"]["ci"] != c["variants"]["lambda"]["ci"]


def test_coverage_and_novelty() -> None:
    assert coverage(np.array([[0, 1, 2], [2, 3, 4]]), k=2, catalogue=10) == pytest.approx(0.4)  # {0, 1, 2, 3}
    info = np.array([1.0, 3.0, 5.0])
    lists = np.array([[0, 1], [2, -1], [-1, -1]])
    assert novelty(lists, k=2, info=info) == pytest.approx((2.0 + 5.0) / 2)  # the empty list is skipped


def test_popular_items_are_less_novel() -> None:
    board = Scoreboard(["head", "tail"], k_max=1)
    board.add("u", 0.0, "x", {"head": ["hot"], "tail": ["cold"]})
    doc = summarise(board, [1], catalogue=2, popularity={"hot": 1000.0, "cold": 1.0}, draws=10)
    assert doc["variants"]["head"]["novelty@1"] < doc["variants"]["tail"]["novelty@1"]


def test_staleness_bins_double_from_one_hour() -> None:
    board = Scoreboard(["a"], k_max=1)
    for hours, hit in [(0.5, True), (1.5, False), (3.0, True), (3.5, True), (30.0, False)]:
        board.add("u", hours, "x", {"a": ["x" if hit else "y"]})
    st = staleness(board, k=1)
    assert st["bins_hours"] == [[0.0, 1.0], [1.0, 2.0], [2.0, 4.0], [16.0, 32.0]]
    assert st["events"] == [1, 1, 2, 1]
    assert st["variants"]["a"]["hit@1"] == [1.0, 0.0, 1.0, 0.0]
    assert staleness(board, k=1, min_events=2)["bins_hours"] == [[2.0, 4.0]]
    assert not math.isnan(st["variants"]["a"]["ndcg@1"][0])
