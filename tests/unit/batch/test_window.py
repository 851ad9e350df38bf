"""The data-loss warning: a filter that drops more than batch.max_filtered_share of the events is named."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from batch_layer.interactions import read_interactions
from batch_layer.window import data_loss_warnings
from lambdarec.settings import BatchSettings

from .conftest import AS_OF


def _log(tmp_path, days: list[int], kinds: list[str]):
    path = tmp_path / "log.parquet"
    times = [AS_OF - timedelta(days=d) for d in days]
    pl.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(days))],
            "item_id": ["i"] * len(days),
            "timestamp": times,
            "event_type": kinds,
        }
    ).write_parquet(path)
    return path


def test_a_lookback_dropping_most_events_warns_naming_the_setting(tmp_path) -> None:
    path = _log(tmp_path, [1, 2, 50, 60, 70], ["view"] * 5)
    batch = BatchSettings(lookback_days=30)
    _, report = read_interactions(path, batch, as_of=AS_OF)
    (warning,) = data_loss_warnings(report, batch)
    assert warning["setting"] == "batch.lookback_days" and warning["filter"] == "lookback"
    assert (warning["dropped"], warning["eligible"], warning["share"]) == (3, 5, 0.6)
    assert "batch.lookback_days = 30" in warning["message"] and "unset batch.lookback_days" in warning["message"]


def test_below_the_threshold_nothing_is_said(tmp_path) -> None:
    path = _log(tmp_path, [1, 2, 3, 4, 50], ["view"] * 5)
    batch = BatchSettings(lookback_days=30)
    _, report = read_interactions(path, batch, as_of=AS_OF)
    assert data_loss_warnings(report, batch) == []  # 1 of 5 = 20%, not above it
    assert data_loss_warnings(report, batch.model_copy(update={"max_filtered_share": 0.1}))[0]["share"] == 0.2


def test_events_after_the_cut_off_are_not_data_loss(tmp_path) -> None:
    path = _log(tmp_path, [1, -1, -2, -3], ["view"] * 4)  # three events after as-of: excluded on purpose
    _, report = read_interactions(path, BatchSettings(), as_of=AS_OF)
    assert report.after_as_of == 3 and data_loss_warnings(report, BatchSettings()) == []


def test_a_row_filter_names_its_setting_and_several_small_ones_add_up(tmp_path) -> None:
    path = _log(tmp_path, [1, 2, 3, 4, 5], ["view", "like", "like", "view", "view"])
    _, report = read_interactions(path, BatchSettings(), as_of=AS_OF)
    (warning,) = data_loss_warnings(report, BatchSettings())
    assert warning["filter"] == "unknown_event_type" and warning["setting"] == "batch.event_weights"
    path = _log(tmp_path, [1, 2, 3, 4, 5, 40, 41, 42, 43, 44], ["view"] * 8 + ["like"] * 2)
    batch = BatchSettings(lookback_days=30, max_filtered_share=0.25)  # 2 + 3 = 50%, each alone 20% / 30%
    _, report = read_interactions(path, batch, as_of=AS_OF)
    (warning,) = data_loss_warnings(report, batch)
    assert warning["filter"] == "lookback"  # 3 of 10 alone exceeds 25%
    batch = batch.model_copy(update={"max_filtered_share": 0.35})
    (warning,) = data_loss_warnings(report, batch)
    assert warning["filter"] == "all filters" and warning["dropped"] == 5
    assert warning["setting"] == "batch.event_weights, batch.lookback_days"
