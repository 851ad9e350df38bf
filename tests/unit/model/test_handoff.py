"""The handoff by log position and the erasure tombstone, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from lambdarec.erasure import tombstone
from lambdarec.model.freshstate import erased_for, positions_of, rebase, solve, uncovered
from lambdarec.model.rows import FreshUser, UserRow
from lambdarec.settings import LakeSettings, Settings
from tests.factories import snapshot_model


def model(version: str, cutoff: float = 1000.0, positions: dict[str, int] | None = None, built_at: float = 0.0):
    m = snapshot_model(version=version)
    m.manifest.update({"data_cutoff_s": cutoff, "built_at_s": built_at})
    if positions is not None:
        m.manifest["log_positions"] = positions
    return m


def test_covers_is_by_log_position_whatever_the_event_time() -> None:
    m = model("v2", cutoff=5000.0, positions={"0": 10, "2": 3})
    assert m.covers((0, 9), 9999.0)  # read by the batch, even with an event time after the cut-off
    assert not m.covers((0, 10), 10.0)  # not read, even with an event time long before the cut-off
    assert not m.covers((1, 0), 10.0)  # a partition the batch never read
    assert m.covers(None, 4000.0) and not m.covers(None, 6000.0)  # legacy entries: the event-time fallback


def test_legacy_entries_without_positions_come_first() -> None:
    state = FreshUser(user_id="u", events=[("a", 1.0, 1.0), ("b", 2.0, 1.0), ("c", 3.0, 1.0)], event_positions=[(0, 7)])
    assert positions_of(state) == [None, None, (0, 7)]
    kept, positions = uncovered(state, model("v", cutoff=1.5, positions={"0": 7}))
    assert [e[0] for e in kept] == ["b", "c"] and positions == [(0, 7)]


def test_a_tombstone_hides_the_history_of_snapshots_built_before_it() -> None:
    state = tombstone("u1", erased_at=2000.0, log_end={0: 5})
    assert state.positions == {"0": 5} and state.events == [] and state.vector is None
    older, newer = model("v1", built_at=1000.0), model("v2", built_at=3000.0)
    assert erased_for(state, older) and not erased_for(state, newer)
    history = UserRow("u1", np.array([], np.int32), np.array([], np.float32), np.array([1, 2], np.int32),
                      np.array([1.0, 1.0], np.float32))  # fmt: skip
    assert solve(state, older, history).vector is None  # nothing of the erased history is folded in
    assert rebase(state, older, history).vector is None


def test_lake_settings_refuse_the_unsafe_rename_and_mask_secrets() -> None:
    with pytest.raises(ValueError, match="conditional puts"):
        LakeSettings(url="s3://b/lake", storage_options={"AWS_S3_ALLOW_UNSAFE_RENAME": "true"})
    s = Settings.load(overrides={"lake": {"url": "s3://b/l", "storage_options": {"AWS_SECRET_ACCESS_KEY": "x"}}})
    assert s.masked()["lake"]["storage_options"] == {"AWS_SECRET_ACCESS_KEY": "***"}
    with pytest.raises(Exception, match="scheme"):
        Settings.load(overrides={"lake": {"url": "ftp://host/lake"}})
