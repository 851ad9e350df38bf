"""Importing public rating files, and fetching MovieLens-100K through pip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batch_layer.datasets import LOG_COLUMNS, fetch_movielens_100k, import_dataset, write_log
from batch_layer.errors import BadInputError, DatasetFetchError, RegistryUnreachableError
from batch_layer.interactions import read_interactions
from lambdarec.settings import BatchSettings

# The same three ratings in each format.
EXPECTED = [("196", "242", 881250949, 3.0), ("186", "302", 891717742, 3.5), ("22", "377", 878887116, 1.0)]
SAMPLES = {
    "ml-100k": ("u.data", "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n22\t377\t1\t878887116\n"),
    "ml-1m": ("ratings.dat", "196::242::3::881250949\n186::302::3.5::891717742\n22::377::1::878887116\n"),
    "ml-latest": (
        "ratings.csv",
        "userId,movieId,rating,timestamp\n196,242,3.0,881250949\n186,302,3.5,891717742\n22,377,1.0,878887116\n",
    ),
    "recbole": (
        "tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3.5\t891717742.0\n22\t377\t1\t878887116\n",
    ),
}


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_each_format_imports_to_the_canonical_log(tmp_path, fmt):
    name, text = SAMPLES[fmt]
    (tmp_path / name).write_text(text)

    frame = import_dataset(fmt, tmp_path / name)

    assert tuple(frame.columns) == LOG_COLUMNS
    assert frame.select("user_id", "item_id", "timestamp", "weight").rows() == EXPECTED
    assert frame["event_type"].unique().to_list() == ["rating"]
    assert frame["event_id"].to_list() == ["196:242:881250949", "186:302:891717742", "22:377:878887116"]
    assert import_dataset("auto", tmp_path / name).equals(frame)


def test_recbole_columns_may_come_in_any_order_and_rating_may_be_absent(tmp_path):
    path = tmp_path / "clicks.inter"
    path.write_text("timestamp:float\titem_id:token\tuser_id:token\n881250949\t242\t196\n")
    frame = import_dataset("recbole", path)
    assert frame.select("user_id", "item_id", "timestamp", "weight").row(0) == ("196", "242", 881250949, 1.0)


def test_imported_log_reads_back_through_the_batch_reader(tmp_path):
    name, text = SAMPLES["ml-100k"]
    (tmp_path / name).write_text(text)
    write_log(import_dataset("ml-100k", tmp_path / name), tmp_path / "log.parquet")

    frame, report = read_interactions(
        tmp_path / "log.parquet", BatchSettings(lookback_days=None), as_of=datetime(2000, 1, 1, tzinfo=UTC)
    )

    assert report.rows_kept == 3
    assert sorted(frame["weight"].to_list()) == [1.0, 3.0, 3.5]
    assert frame["ts"].max() == 891717742 * 1000


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("ml-100k", "1\t2\t3\t4\n1\t2\t3\n", r"line 2: it has the wrong number of fields \(expected 4"),
        ("ml-100k", "1\t2\t3\t4\n1\t2\tgood\t4\n", "line 2: the rating is not a number"),
        ("ml-1m", "1::2::3::soon\n", "line 1: the timestamp is not a number"),
        ("ml-latest", "user,movie,rating,timestamp\n1,2,3,4\n", "line 1: expected the header userId,movieId"),
        ("ml-latest", "userId,movieId,rating,timestamp\n1,2,3,4\n,2,3,4\n", "line 3: the user id is empty"),
        ("recbole", "user_id:token\trating:float\n1\t2\n", "no item_id field"),
    ],
    ids=["fields", "rating", "timestamp", "header", "user", "recbole-field"],
)
def test_a_malformed_line_is_named_by_number(tmp_path, fmt, text, expected):
    path = tmp_path / "data.txt"
    path.write_text(text)
    with pytest.raises(BadInputError, match=expected):
        import_dataset(fmt, path)


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path):
    (tmp_path / "x.txt").write_text("1\t2\t3\t4\n")
    with pytest.raises(BadInputError, match="expected one of ml-100k, ml-1m, ml-latest, recbole"):
        import_dataset("netflix", tmp_path / "x.txt")
    with pytest.raises(BadInputError, match="cannot tell the format"):
        import_dataset("auto", tmp_path / "x.txt")
    with pytest.raises(BadInputError, match="does not exist"):
        import_dataset("ml-100k", tmp_path / "absent")


@pytest.mark.slow
def test_fetch_movielens_100k_through_pip_and_import_it(tmp_path):
    try:
        path = fetch_movielens_100k(tmp_path / "cache")
    except RegistryUnreachableError as exc:
        pytest.skip(f"the package index is unreachable, so recbole's wheel cannot be downloaded: {exc}")

    assert path == tmp_path / "cache" / "datasets" / "ml-100k.inter"
    assert fetch_movielens_100k(tmp_path / "cache") == path  # served from the cache
    frame = import_dataset("recbole", path)
    assert frame.height == 100_000
    assert frame["user_id"].n_unique() == 943
    assert frame["item_id"].n_unique() == 1682
    assert frame["event_id"].n_unique() == 100_000
    assert sorted(frame["weight"].unique().to_list()) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_fetch_reports_an_unreachable_index_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(RegistryUnreachableError, match=r"could not download recbole==1\.2\.1.*unreachable"):
        fetch_movielens_100k(tmp_path)
    assert not (tmp_path / "datasets" / "ml-100k.inter").exists()


def test_fetch_failing_for_another_reason_is_not_called_unreachable(tmp_path, monkeypatch):
    empty_index = tmp_path / "index"
    empty_index.mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", empty_index.as_uri())
    with pytest.raises(DatasetFetchError) as info:
        fetch_movielens_100k(tmp_path / "cache")
    assert not isinstance(info.value, RegistryUnreachableError)
