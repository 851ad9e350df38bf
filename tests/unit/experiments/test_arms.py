"""Per-arm overrides: the arm's [serving] on top of the base, and the popular-only control's inputs."""

from __future__ import annotations

import numpy as np

from lambdarec.experiments import POPULAR_ONLY, arm_plans, popular_only_inputs
from lambdarec.model.rows import FreshUser, UserRow, UserState
from lambdarec.settings import Settings


def test_an_arm_overrides_only_the_keys_it_names():
    s = Settings.load(
        overrides={
            "serving": {"weight_session": 0.7},
            "experiments": {
                "e": {
                    "salt": "x",
                    "arms": [
                        {"name": "control", "popular_only": True},
                        {"name": "mmr", "serving": {"mmr_lambda": 0.3, "merge": {"trending_top_n": 7}}},
                        {"name": "old", "snapshot": "v1"},
                    ],
                }
            },
        }
    )
    plans = arm_plans(s)
    mmr = plans["e", "mmr"]
    assert (mmr.weights.mmr_lambda, mmr.weights.trending_top_n) == (0.3, 7)
    assert mmr.weights.session == 0.7 and mmr.weights.speed_top_n == 100  # the rest is the base
    assert plans["e", "control"].weights == POPULAR_ONLY and plans["e", "control"].popular_only
    assert plans["e", "old"].snapshot == "v1" and plans["e", "old"].weights.session == 0.7


def test_popular_only_keeps_what_the_user_has_seen_out_of_the_list():
    row = UserRow("u1", np.array([3, 1], np.int32), np.array([0.9, 0.5], np.float32),
                  np.array([2], np.int32), np.array([1.0], np.float32))  # fmt: skip
    fresh = FreshUser(user_id="u1", events=[("i9", 10.0, 1.0)], recent=[("i8", 11.0)], vector=[0.1, 0.2], basis="v")
    state, exclude = popular_only_inputs(UserState(row, fresh), ("i7",), frozenset({"i6"}))
    assert state.fresh is None
    assert state.batch_row is not None and state.batch_row.candidates.size == 0
    assert state.batch_row.history.tolist() == [2]
    assert exclude == {"i6", "i7", "i8", "i9"}


def test_popular_only_never_shows_what_the_user_hid_or_disliked():
    fresh = FreshUser(user_id="u1", hidden={"i3": 5.0}, disliked={"i4": 6.0})
    _state, exclude = popular_only_inputs(UserState(None, fresh), (), frozenset())
    assert {"i3", "i4"} <= exclude
