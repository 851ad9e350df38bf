"""Reading the interaction log: formats, time, window, duplicates, bad rows, fingerprint."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from batch_layer.errors import BadInputError, BadRowError
from batch_layer.interactions import CANONICAL_SCHEMA, parse_time, read_interactions
from lambdarec.settings import BatchSettings, ColumnNames

from .conftest import AS_OF, T0, T0_MS, T0_S


def read(source, as_of=AS_OF, **batch):
    return read_interactions(source, BatchSettings(**batch), as_of=as_of)


def test_parquet_gives_canonical_columns_weights_and_time_order(tmp_path, rows):
    path = tmp_path / "log.parquet"
    pl.DataFrame(rows).reverse().write_parquet(path)

    frame, report = read(path)

    assert frame.schema == CANONICAL_SCHEMA
    assert frame["ts"].to_list() == [T0_MS, T0_MS + 60_000, T0_MS + 120_000, T0_MS + 180_000]
    # event weight x explicit weight; a missing explicit weight counts as 1.
    assert frame["weight"].to_list() == [1.0, 3.0, 8.0, 2.0]
    assert frame["event_type"].to_list() == ["view", "click", "purchase", "view"]
    assert (report.rows_read, report.rows_kept, report.duplicates_dropped, report.files) == (5, 4, 1, 1)


def test_csv_reads_the_same_as_parquet(tmp_path, rows):
    pl.DataFrame(rows).write_parquet(tmp_path / "log.parquet")
    pl.DataFrame(rows).write_csv(tmp_path / "log.csv")

    from_parquet, _ = read(tmp_path / "log.parquet")
    from_csv, _ = read(tmp_path / "log.csv")

    assert from_csv.equals(from_parquet)


def test_tsv_is_read_with_tabs(tmp_path, rows):
    pl.DataFrame(rows).write_csv(tmp_path / "log.tsv", separator="\t")
    frame, _ = read(tmp_path / "log.tsv")
    assert frame.height == 4


def test_glob_reads_every_matching_file(tmp_path, rows):
    frame = pl.DataFrame(rows)
    frame.head(2).write_parquet(tmp_path / "part-0.parquet")
    frame.slice(2).write_parquet(tmp_path / "part-1.parquet")
    (tmp_path / "other.parquet").write_bytes(b"not matched by the glob")

    out, report = read(str(tmp_path / "part-*.parquet"))

    assert report.files == 2
    assert sorted(out["user_id"].to_list()) == ["u1", "u1", "u2", "u3"]


def test_hive_folder_takes_partition_values_and_skips_markers(tmp_path):
    for event_type, user in (("click", "u1"), ("purchase", "u2")):
        part = tmp_path / "log" / f"event_type={event_type}"
        part.mkdir(parents=True)
        pl.DataFrame({"user_id": [user], "item_id": ["a"], "timestamp": [T0_S]}).write_parquet(part / "0.parquet")
    (tmp_path / "log" / "_SUCCESS").write_text("")
    (tmp_path / "log" / "summary.json").write_text("{}")

    frame, report = read(tmp_path / "log")

    assert report.files == 2
    assert dict(zip(frame["user_id"], frame["event_type"], strict=True)) == {"u1": "click", "u2": "purchase"}
    assert dict(zip(frame["user_id"], frame["weight"], strict=True)) == {"u1": 2.0, "u2": 8.0}


@pytest.mark.parametrize(
    "value",
    [
        T0_S,
        T0_MS,
        T0_MS * 1000,
        float(T0_S),
        T0,
        T0.replace(tzinfo=None),
        str(T0_S),
        str(T0_MS),
        "2024-01-10T12:00:00Z",
        "2024-01-10 12:00:00",
        "2024-01-10T14:00:00+02:00",
        "2024-01-10T12:00:00.000",
    ],
    ids=lambda v: type(v).__name__ + ":" + str(v),
)
def test_every_timestamp_form_means_the_same_instant(tmp_path, value):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [value]}).write_parquet(path)
    frame, report = read(path)
    assert report.bad_rows == {}
    assert frame["ts"].to_list() == [T0_MS]


def test_seconds_and_milliseconds_mix_by_magnitude_in_one_csv(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,item_id,timestamp\nu,a,{T0_S}\nu,b,{T0_MS + 5}\n")
    frame, _ = read(path)
    assert frame["ts"].to_list() == [T0_MS, T0_MS + 5]


def test_explicit_timestamp_unit_overrides_the_guess(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,a,1000\n")  # 1000 ms after the epoch, not 1000 s
    frame, _ = read(path, timestamp_unit="ms", lookback_days=None)
    assert frame["ts"].to_list() == [1000]


def test_as_of_drops_later_events_and_lookback_drops_older_ones(tmp_path):
    path = tmp_path / "log.parquet"
    times = [AS_OF - timedelta(days=40), AS_OF - timedelta(days=20), AS_OF, AS_OF + timedelta(seconds=1)]
    pl.DataFrame({"user_id": ["a", "b", "c", "d"], "item_id": ["i"] * 4, "timestamp": times}).write_parquet(path)

    frame, report = read(path, lookback_days=30)

    assert frame["user_id"].to_list() == ["b", "c"]
    assert (report.after_as_of, report.before_window, report.outside_window) == (1, 1, 2)
    assert report.window_start_ms == int((AS_OF - timedelta(days=30)).timestamp() * 1000)


def test_as_of_defaults_to_the_newest_event_that_is_not_in_the_future(tmp_path):
    path = tmp_path / "log.parquet"
    future = datetime.now(UTC) + timedelta(days=1)
    recent = datetime.now(UTC) - timedelta(days=1)
    pl.DataFrame({"user_id": ["a", "b"], "item_id": ["i", "i"], "timestamp": [recent, future]}).write_parquet(path)
    frame, report = read_interactions(path)
    assert frame["user_id"].to_list() == ["a"]
    assert report.after_as_of == 1
    assert report.as_of_ms == int(recent.timestamp() * 1000)


def test_an_old_log_is_read_whole_without_as_of(tmp_path):
    """MovieLens-100K's events are from 1997-98: the default cut-off is its newest event, not today."""
    path = tmp_path / "log.parquet"
    times = [datetime(1997, 9, 20, tzinfo=UTC), datetime(1998, 4, 22, tzinfo=UTC)]
    pl.DataFrame({"user_id": ["a", "b"], "item_id": ["i", "j"], "timestamp": times}).write_parquet(path)
    frame, report = read_interactions(path, BatchSettings(lookback_days=30))
    assert frame["user_id"].to_list() == ["b"]  # the lookback counts back from 1998-04-22
    assert report.as_of_ms == int(times[1].timestamp() * 1000) and report.before_window == 1


def test_duplicates_by_event_id_keep_the_first_and_null_ids_are_kept(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        f"user_id,item_id,timestamp,event_id\nu,a,{T0_S},e1\nu,b,{T0_S},e1\nu,c,{T0_S},\nu,c,{T0_S},\nu,d,{T0_S},e2\n"
    )
    frame, report = read(path)
    assert frame["item_id"].to_list() == ["a", "c", "c", "d"]
    assert report.duplicates_dropped == 1


def test_without_an_event_id_column_identical_rows_are_both_kept(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"user_id,item_id,timestamp\nu,a,{T0_S}\nu,a,{T0_S}\n")
    frame, report = read(path)
    assert frame.height == 2
    assert report.duplicates_dropped == 0


BAD_CSV = (
    "user_id,item_id,timestamp,event_type,weight\n"
    f"u1,a,{T0_S},view,1\n"  # good
    f",a,{T0_S},view,1\n"  # missing user
    f"u2,,{T0_S},view,1\n"  # missing item
    "u3,a,,view,1\n"  # missing timestamp
    "u4,a,yesterday,view,1\n"  # unparsable timestamp
    f"u5,a,{T0_S},view,heavy\n"  # non-numeric weight
    f"u6,a,{T0_S},view,-2\n"  # negative weight
    f"u7,a,{T0_S},like,1\n"  # unknown event type
    f"u8,a,{T0_S},view,nan\n"  # non-numeric weight
    f"u9,a,{T0_S},click,\n"  # good: no explicit weight
)


def test_bad_rows_are_skipped_and_counted_by_reason(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(BAD_CSV)

    frame, report = read(path)

    assert frame["user_id"].to_list() == ["u1", "u9"]
    assert report.bad_rows == {
        "missing_user_id": 1,
        "missing_item_id": 1,
        "missing_timestamp": 1,
        "unparsable_timestamp": 1,
        "non_numeric_weight": 2,
        "negative_weight": 1,
        "unknown_event_type": 1,
    }
    assert report.rows_read == report.rows_kept + report.bad_total + report.duplicates_dropped
    assert report.to_dict()["bad_total"] == 8


def test_fail_mode_names_the_file_row_line_and_reason(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(BAD_CSV)

    with pytest.raises(BadRowError) as info:
        read(path, on_bad_rows="fail")

    message = str(info.value)
    assert "log.csv" in message
    assert "row 2 (line 3)" in message
    assert "user id is empty" in message
    assert 'on_bad_rows = "skip"' in message
    assert (info.value.row, info.value.reason) == (2, "missing_user_id")


def test_fail_mode_in_parquet_names_the_row_and_the_known_event_types(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["i", "i"], "timestamp": [T0_S] * 2, "event_type": ["view", "zap"]}
    ).write_parquet(path)

    with pytest.raises(BadRowError, match=r"row 2: the event type is not a key of batch.event_weights \(cart, click"):
        read(path, on_bad_rows="fail")


def test_fail_mode_accepts_a_clean_log(tmp_path, rows):
    pl.DataFrame(rows).write_parquet(tmp_path / "log.parquet")
    frame, _ = read(tmp_path / "log.parquet", on_bad_rows="fail")
    assert frame.height == 4


def test_missing_required_column_names_it_and_lists_the_available_ones(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user": ["a"], "item_id": ["i"], "timestamp": [T0_S]}).write_parquet(path)
    with pytest.raises(BadInputError) as info:
        read(path)
    message = str(info.value)
    assert "no column 'user_id' (batch.columns.user_id)" in message
    assert "available columns: user, item_id, timestamp" in message


def test_configured_column_names_and_event_weights_are_used(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"who,what,when,kind,strength\nu,a,{T0_S},like,3\n")
    columns = ColumnNames(user_id="who", item_id="what", timestamp="when", event_type="kind", weight="strength")
    frame, _ = read(path, columns=columns, event_weights={"like": 0.5})
    assert frame.select("user_id", "item_id", "weight", "event_type").row(0) == ("u", "a", 1.5, "like")


def test_integer_and_float_ids_become_text(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [7, 8], "item_id": [1.0, None], "timestamp": [T0_S] * 2}).write_parquet(path)
    frame, report = read(path)
    assert frame.select("user_id", "item_id").row(0) == ("7", "1")
    assert report.bad_rows == {"missing_item_id": 1}


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "absent.parquet", "does not exist"),
        (lambda d: str(d / "*.parquet"), "matches no file"),
        (lambda d: d, "holds no data files"),
    ],
    ids=["missing-file", "empty-glob", "empty-folder"],
)
def test_missing_input_is_a_clear_error(tmp_path, make, expected):
    with pytest.raises(BadInputError, match=expected):
        read(make(tmp_path))


def test_unreadable_and_unknown_files_are_clear_errors(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(BadInputError, match=r"broken\.parquet"):
        read(tmp_path / "broken.parquet")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(BadInputError, match="neither parquet nor CSV"):
        read(tmp_path / "log.json")


def test_no_source_at_all_names_the_setting():
    with pytest.raises(BadInputError, match=r"batch\.interactions"):
        read_interactions(None, BatchSettings())


def test_source_defaults_to_the_setting(tmp_path, rows):
    pl.DataFrame(rows).write_parquet(tmp_path / "log.parquet")
    frame, _ = read_interactions(None, BatchSettings(interactions=str(tmp_path / "log.parquet")), as_of=AS_OF)
    assert frame.height == 4


def test_fingerprint_follows_content_not_location(tmp_path, rows):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    pl.DataFrame(rows).write_parquet(first / "log.parquet")
    shutil.copytree(first, second)
    (second / "log.parquet").touch()  # a new mtime must not matter

    _, one = read(first)
    _, two = read(second)
    assert one.fingerprint == two.fingerprint

    pl.DataFrame(rows).head(2).write_parquet(second / "log.parquet")
    _, three = read(second)
    assert three.fingerprint != one.fingerprint


def test_parse_time_accepts_iso_and_epochs_and_rejects_text():
    assert parse_time("2024-01-10T12:00:00Z") == T0
    assert parse_time(str(T0_S)) == T0
    assert parse_time(str(T0_MS)) == T0
    with pytest.raises(BadInputError, match="ISO-8601"):
        parse_time("next tuesday")
