"""Batch limits under the node's warning thresholds, as each Cassandra release reports them."""

from __future__ import annotations

import pytest

from lambdarec.store.cassandra_limits import BatchLimits, limits_from, read_limits, size_bytes
from lambdarec.store.errors import StoreError, StoreUnavailableError


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [("5KiB", 1, 5120), ("512B", 1, 512), ("1MiB", 1, 1 << 20), (" 40 KiB ", 1, 40960), ("5", 1024, 5120),
     (None, 1, None), ("null", 1, None), ("5kb", 1, None), ("", 1, None)],
)  # fmt: skip
def test_size_settings_in_every_form_cassandra_reports(value: str | None, unit: int, expected: int | None) -> None:
    assert size_bytes(value, unit) == expected


def test_limits_fill_four_fifths_of_the_byte_threshold_and_all_of_the_partition_one() -> None:
    five = {"batch_size_warn_threshold": "5KiB", "batch_size_fail_threshold": "50KiB",
            "unlogged_batch_across_partitions_warn_threshold": "10"}  # fmt: skip
    assert limits_from(five) == BatchLimits(bytes=4096, partitions=10) == limits_from({})
    raised = five | {"batch_size_warn_threshold": "32KiB", "unlogged_batch_across_partitions_warn_threshold": "32"}
    assert limits_from(raised) == BatchLimits(bytes=26214, partitions=32)


def test_cassandra_4_0_reports_sizes_in_kib_under_other_names() -> None:
    four = {"batch_size_warn_threshold_in_kb": "16", "batch_size_fail_threshold_in_kb": "50",
            "unlogged_batch_across_partitions_warn_threshold": "20"}  # fmt: skip
    assert limits_from(four) == BatchLimits(bytes=int(16 * 1024 * 0.8), partitions=20)


def test_a_warning_threshold_above_the_failure_one_never_sizes_a_batch_the_node_refuses() -> None:
    limits = limits_from({"batch_size_warn_threshold": "200KiB", "batch_size_fail_threshold": "50KiB"})
    assert limits.bytes == int(50 * 1024 * 0.8)


def test_a_bare_number_is_read_in_kib_under_either_name() -> None:
    assert limits_from({"batch_size_warn_threshold": "20"}).bytes == int(20 * 1024 * 0.8)


def test_a_threshold_that_is_not_a_size_counts_as_the_stock_one() -> None:
    assert limits_from({"batch_size_warn_threshold": None, "unlogged_batch_across_partitions_warn_threshold": "x"}) \
        == BatchLimits(bytes=4096, partitions=10)  # fmt: skip


def test_a_node_that_refuses_the_query_gets_the_stock_limits_and_the_reason() -> None:
    def refused(cql: str, params: tuple) -> list:  # an older release, or a role without SELECT on system_views
        raise StoreError("Cassandra keyspace recs refused SELECT: unconfigured table settings")

    limits, source = read_limits(refused)
    assert limits == BatchLimits(bytes=4096, partitions=10)
    assert "stock thresholds" in source and "unconfigured table settings" in source


def test_a_node_that_does_not_answer_is_not_taken_for_one_with_stock_thresholds() -> None:
    def down(cql: str, params: tuple) -> list:
        raise StoreUnavailableError("Cassandra did not answer")

    with pytest.raises(StoreUnavailableError):
        read_limits(down)  # raised to the caller, which retries: the node's own thresholds are read when it is back


def test_the_query_asks_for_every_name_a_release_may_use() -> None:
    asked = []
    read_limits(lambda cql, params: asked.append(params[0]) or [("batch_size_warn_threshold", "8KiB")])
    names = {"batch_size_warn_threshold", "batch_size_warn_threshold_in_kb", "batch_size_fail_threshold",
             "unlogged_batch_across_partitions_warn_threshold"}  # fmt: skip
    assert set(asked[0]) >= names
