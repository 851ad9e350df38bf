"""The lifecycle rules both backends share: versions, manifests, activation, pruning, the pointer cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdarec.store import SnapshotInfo, SnapshotNotFoundError, SnapshotStateError, lifecycle
from lambdarec.store.versions import CurrentPointer, new_version

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def info(version: str, state: str, hours_ago: float, current: bool = False) -> SnapshotInfo:
    return SnapshotInfo(version, state, current, NOW - timedelta(hours=hours_ago))  # type: ignore[arg-type]


def test_versions_sort_by_time_and_increase_within_a_process() -> None:
    versions = [new_version() for _ in range(500)]
    assert versions == sorted(versions) and len(set(versions)) == 500
    assert new_version(datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)).startswith("20260102T030405678Z-")


def test_prune_plan_keeps_newest_published_and_current_and_retires_abandoned_writes() -> None:
    snapshots = [
        info("v1", "published", 50, current=True),
        info("v2", "published", 40),
        info("v3", "published", 30),
        info("v4", "published", 20),
        info("w-old", "writing", 30),
        info("w-new", "writing", 1),
        info("r", "retired", 60),
    ]
    assert lifecycle.prune_plan(snapshots, 2, NOW, abandon_after_s=86400) == ["v2", "w-old"]
    assert lifecycle.prune_plan(snapshots, 10, NOW, abandon_after_s=86400) == ["w-old"]
    with pytest.raises(ValueError, match="keep=0"):
        lifecycle.prune_plan(snapshots, 0, NOW, 1)


def test_expected_counts_names_what_is_missing() -> None:
    assert lifecycle.expected_counts("v", {"counts": {"user_rows": 3, "item_rows": 0}}) == (3, 0)
    with pytest.raises(ValueError, match="'counts' mapping"):
        lifecycle.expected_counts("v", {})
    with pytest.raises(ValueError, match=r"counts\.user_rows must be an integer >= 0; got -1"):
        lifecycle.expected_counts("v", {"counts": {"user_rows": -1, "item_rows": 0}})
    with pytest.raises(ValueError, match=r"counts\.item_rows .* got True"):
        lifecycle.expected_counts("v", {"counts": {"user_rows": 1, "item_rows": True}})


def test_state_checks_say_why() -> None:
    with pytest.raises(SnapshotNotFoundError, match="begin_snapshot"):
        lifecycle.require_writing("v", None)
    with pytest.raises(SnapshotStateError, match="v is published, so it can no longer be written"):
        lifecycle.require_writing("v", "published")
    lifecycle.require_writing("v", "writing")
    with pytest.raises(SnapshotStateError, match="never published"):
        lifecycle.require_activatable(info("v", "writing", 1))
    with pytest.raises(SnapshotStateError, match="retired by prune"):
        lifecycle.require_activatable(info("v", "retired", 1))
    with pytest.raises(SnapshotStateError, match="TTL"):
        lifecycle.require_activatable(info("v", "published", 1), expired=True)
    lifecycle.require_activatable(info("v", "published", 1))


def test_current_pointer_is_cached_for_its_max_age() -> None:
    answers = iter(["v1", "v2", "v3"])
    calls: list[int] = []

    def fetch() -> str:
        calls.append(1)
        return next(answers)

    pointer = CurrentPointer(fetch, default_max_age_s=60)
    assert pointer.get() == "v1" and pointer.get() == "v1" and len(calls) == 1
    assert pointer.get(max_age_s=0) == "v2" and len(calls) == 2
    pointer.set("mine")
    assert pointer.get() == "mine" and len(calls) == 2
    assert CurrentPointer(fetch, default_max_age_s=0).get() == "v3"
