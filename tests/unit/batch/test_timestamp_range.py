"""Out-of-range timestamps are bad rows, not a failed job (issue 12, finding 7)."""

from __future__ import annotations

import polars as pl
import pytest

from batch_layer.errors import BadRowError
from batch_layer.interactions import read_interactions
from lambdarec.settings import BatchSettings

from .conftest import AS_OF, T0_S

DUMP_MARKERS = ("Resolved plan", "FAILED HERE", "col(", "strict", "dyn ")


def csv_with(stamp: str, tmp_path, good: int = T0_S) -> object:
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,item_id,timestamp\nu1,a,{good}\nu2,b,{stamp}\nu3,c,{good}\n")
    return path


@pytest.mark.parametrize("stamp", ["1e30", "9" * 30, "-1e30", "-5000000000", "1e300", "9223372036854775807"])
@pytest.mark.parametrize("unit", ["auto", "s", "ms"])
def test_csv_out_of_range_timestamps_are_counted_under_skip(tmp_path, stamp: str, unit: str) -> None:
    if unit == "auto" and stamp == "9223372036854775807":
        stamp = "-" + stamp  # the largest int64 reads as nanoseconds under "auto": 2262-04-11, in range
    good = T0_S * 1000 if unit == "ms" else T0_S
    path = csv_with(stamp, tmp_path, good)
    frame, report = read_interactions(path, BatchSettings(timestamp_unit=unit), as_of=AS_OF)
    assert frame["user_id"].to_list() == ["u1", "u3"]
    assert report.bad_rows == {"timestamp_out_of_range": 1}


@pytest.mark.parametrize("values", [[float(T0_S), 1e30, float(T0_S)], [float(T0_S), -1e20, float(T0_S)]])
def test_parquet_float_out_of_range_is_counted(tmp_path, values: list[float]) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"], "timestamp": values}).write_parquet(path)
    frame, report = read_interactions(path, BatchSettings(), as_of=AS_OF)
    assert frame.height == 2 and report.bad_rows == {"timestamp_out_of_range": 1}


def test_parquet_int_out_of_range_for_an_explicit_unit_is_counted(tmp_path) -> None:
    path = tmp_path / "log.parquet"
    stamps = [T0_S, 9_000_000_000_000_000_000, T0_S]  # seconds: would overflow int64 milliseconds
    pl.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"], "timestamp": stamps}).write_parquet(path)
    frame, report = read_interactions(path, BatchSettings(timestamp_unit="s"), as_of=AS_OF)
    assert frame.height == 2 and report.bad_rows == {"timestamp_out_of_range": 1}


def test_fail_mode_names_the_row_without_an_expression_dump(tmp_path) -> None:
    with pytest.raises(BadRowError) as info:
        read_interactions(csv_with("1e30", tmp_path), BatchSettings(on_bad_rows="fail"), as_of=AS_OF)
    message = str(info.value)
    assert "row 2 (line 3)" in message and "outside" in message
    assert (info.value.row, info.value.reason) == (2, "timestamp_out_of_range")
    assert not any(marker in message for marker in DUMP_MARKERS), message
    assert len(message) < 600
