"""Reading the log for a replay: windows, novel events, session ids, seeded samples, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from batch_layer.errors import BadInputError
from lambdarec.settings import BatchSettings
from replay.log import load_log, sample_scored

T0 = datetime(2024, 1, 1, tzinfo=UTC)
S0 = int(T0.timestamp())


def _write(tmp_path: Path, **extra: list) -> Path:
    rows = {
        "user_id": ["u1", "u1", "u2", "u1", "u1", "u2"],
        "item_id": ["a", "b", "a", "a", "c", "b"],
        "timestamp": [S0, S0 + 10, S0 + 20, S0 + 100, S0 + 110, S0 + 120],
        "event_type": ["view", "view", "click", "view", "view", "view"],
        **extra,
    }
    path = tmp_path / "log.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def test_windows_and_novel_events(tmp_path: Path) -> None:
    log = load_log(_write(tmp_path), BatchSettings(), split_at=datetime.fromtimestamp(S0 + 50, UTC))
    replay = log.replay
    assert replay["item_id"].to_list() == ["a", "c", "b"]
    assert replay["novel"].to_list() == [False, True, True]  # u1 touched a before the split
    assert log.before(log.split_ms - 35_000)["item_id"].to_list() == ["a"]
    assert replay["session_id"].null_count() == replay.height


def test_until_bounds_the_replay(tmp_path: Path) -> None:
    log = load_log(
        _write(tmp_path),
        BatchSettings(),
        split_at=datetime.fromtimestamp(S0 + 50, UTC),
        until=datetime.fromtimestamp(S0 + 110, UTC),
    )
    assert log.replay["item_id"].to_list() == ["a", "c"]


def test_session_ids_come_from_the_log_when_it_has_them(tmp_path: Path) -> None:
    path = _write(tmp_path, session_id=["s1", "s1", "s2", "s3", "s3", None])
    log = load_log(path, BatchSettings(), split_at=datetime.fromtimestamp(S0 + 50, UTC))
    assert log.replay["session_id"].to_list() == ["s3", "s3", None]


def test_a_split_after_every_event_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"no event .* after the split"):
        load_log(_write(tmp_path), BatchSettings(), split_at=datetime.fromtimestamp(S0 + 500, UTC))
    with pytest.raises(BadInputError, match="at or before the split"):
        load_log(_write(tmp_path), BatchSettings(), split_at=datetime.fromtimestamp(S0 - 500, UTC))


def test_sample_is_seeded_sorted_and_bounded() -> None:
    novel = np.arange(0, 100, 3)
    a, b = sample_scored(novel, 5, seed=2), sample_scored(novel, 5, seed=2)
    assert a.tolist() == b.tolist() and a.tolist() == sorted(a.tolist()) and set(a) <= set(novel)
    assert sample_scored(novel, 5, seed=3).tolist() != a.tolist()
    assert sample_scored(novel, None, seed=0).tolist() == novel.tolist()
    assert sample_scored(novel, 1000, seed=0).tolist() == novel.tolist()


def test_a_share_of_events_picks_the_split(tmp_path: Path) -> None:
    from lambdarec.settings import Settings
    from replay.protocol import quantile_time

    path = _write(tmp_path)
    split = quantile_time(str(path), Settings.load(), 0.5)
    log = load_log(path, BatchSettings(), split_at=split)
    assert log.replay.height == 3 and log.frame.height - log.replay.height == 3
