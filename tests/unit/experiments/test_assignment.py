"""Sticky assignment: stable, proportional to shares, and a share change moves the fewest users."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lambdarec.experiments import assign_arm, assignments, served_assignment
from lambdarec.settings import ConfigError, ExperimentSettings, Settings

USERS = [f"u{i}" for i in range(20000)]


def experiment(shares: dict[str, float], traffic: float = 1.0, salt: str = "s1") -> ExperimentSettings:
    return ExperimentSettings(salt=salt, traffic=traffic, arms=[{"name": n, "share": s} for n, s in shares.items()])


def arms_of(exp: ExperimentSettings) -> dict[str, str | None]:
    return {u: assign_arm(exp, u) for u in USERS}


def test_assignment_is_the_same_in_another_process():
    exp = experiment({"a": 1, "b": 1, "c": 2})
    here = [assign_arm(exp, u) for u in USERS[:200]]
    code = (
        "from lambdarec.settings import ExperimentSettings; from lambdarec.experiments import assign_arm; "
        "e = ExperimentSettings(salt='s1', arms=[{'name': 'a'}, {'name': 'b'}, {'name': 'c', 'share': 2}]); "
        "print(','.join(str(assign_arm(e, f'u{i}')) for i in range(200)))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert there.split(",") == here


def test_arms_get_users_in_proportion_to_their_shares():
    counts: dict[str | None, int] = {}
    for arm in arms_of(experiment({"a": 1, "b": 1, "c": 2})).values():
        counts[arm] = counts.get(arm, 0) + 1
    n = len(USERS)
    for arm, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(counts[arm] - n * share) < 4 * sd, counts


def test_a_new_salt_reshuffles():
    a, b = arms_of(experiment({"a": 1, "b": 1})), arms_of(experiment({"a": 1, "b": 1}, salt="s2"))
    moved = sum(a[u] != b[u] for u in USERS) / len(USERS)
    assert 0.45 < moved < 0.55


def test_changing_one_arm_share_moves_users_only_into_that_arm():
    before = arms_of(experiment({"a": 1, "b": 1, "c": 1}))
    after = arms_of(experiment({"a": 2, "b": 1, "c": 1}))
    moved = [u for u in USERS if before[u] != after[u]]
    assert moved and all(after[u] == "a" for u in moved)
    # the fewest possible: a's share goes from 1/3 to 1/2, so 1/6 of the users must move, and no more
    assert abs(len(moved) / len(USERS) - 1 / 6) < 0.015


def test_adding_an_arm_moves_users_only_into_it_and_closing_one_only_out_of_it():
    two = arms_of(experiment({"a": 1, "b": 1}))
    three = arms_of(experiment({"a": 1, "b": 1, "c": 1}))
    assert all(three[u] == "c" for u in USERS if two[u] != three[u])
    closed = arms_of(experiment({"a": 1, "b": 1, "c": 0}))
    assert closed == two


def test_raising_traffic_only_adds_users():
    low, high = arms_of(experiment({"a": 1, "b": 1}, 0.2)), arms_of(experiment({"a": 1, "b": 1}, 0.5))
    inside_low = {u for u, arm in low.items() if arm is not None}
    inside_high = {u for u, arm in high.items() if arm is not None}
    assert inside_low < inside_high
    assert all(low[u] == high[u] for u in inside_low)  # and they keep their arm
    assert abs(len(inside_low) / len(USERS) - 0.2) < 0.02


def test_the_first_enabled_experiment_with_an_arm_is_served():
    s = Settings.load(
        overrides={
            "experiments": {
                "off": {"salt": "x", "enabled": False, "arms": [{"name": "a"}]},
                "half": {"salt": "y", "traffic": 0.5, "arms": [{"name": "a"}, {"name": "b"}]},
                "all": {"salt": "z", "arms": [{"name": "only"}]},
            }
        }
    )
    for user in USERS[:200]:
        listed = assignments(s.experiments, user)
        assert [a.experiment for a in listed] == ["off", "half", "all"]
        served = served_assignment(s.experiments, user)
        assert served is not None and [a for a in listed if a.served] == [
            listed[[a.experiment for a in listed].index(served.experiment)]
        ]
        expected = "half" if listed[1].arm is not None else "all"
        assert served.experiment == expected and not listed[0].served


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        ({"e": {"salt": "x", "arms": [{"name": "a"}, {"name": "a"}]}}, "unique"),
        ({"e": {"salt": "x", "arms": [{"name": "a", "serving": {"mmr": 1}}]}}, "unknown [serving] keys ['mmr']"),
        ({"e": {"salt": "x", "arms": [{"name": "a", "serving": {"mmr_lambda": 2}}]}}, "mmr_lambda"),
        ({"e": {"salt": "x", "control": "z", "arms": [{"name": "a"}]}}, "control 'z' is not an arm"),
        ({"e": {"salt": "x", "arms": [{"name": "a", "share": 0}]}}, "share > 0"),
        ({"bad name": {"salt": "x", "arms": [{"name": "a"}]}}, "experiment names ['bad name']"),
        ({"e": {"salt": "x", "arms": []}}, "arms"),
    ],
)
def test_bad_experiments_are_refused_naming_the_key(experiments, message):
    with pytest.raises(ConfigError, match="experiments") as info:
        Settings.load(overrides={"experiments": experiments})
    assert message in str(info.value)
