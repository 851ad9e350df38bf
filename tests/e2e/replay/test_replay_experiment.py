"""``lambdarec replay --experiment NAME``: each arm is scored as serving ranks it, on the same events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.replay.conftest import SPLIT, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SAMPLE, SEED = 600, 5
EXPERIMENT = """
[experiments.home]
salt = "home"
[[experiments.home.arms]]
name = "control"
popular_only = true
[[experiments.home.arms]]
name = "same"
[[experiments.home.arms]]
name = "diverse"
serving = { mmr_lambda = 0.6 }
[[experiments.home.arms]]
name = "old"
snapshot = "20240101T000000000Z-abc123"
"""


def replay(log: Path, config: Path, *args: str) -> tuple[dict, str]:
    proc = run_cli(
        "replay",
        *("-i", str(log), "--split-at", SPLIT.isoformat(), "--sample", str(SAMPLE), "--seed", str(SEED)),
        *("--json", "--no-progress", "--config", str(config), *args),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def test_arms_score_as_the_variants_serving_would_be(drift_log: Path, small_config: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(small_config.read_text() + EXPERIMENT)
    arms, notes = replay(drift_log, config, "--experiment", "home")
    plain, _ = replay(drift_log, config, "--variants", "popular,lambda")
    names = list(arms["variants"])
    assert names == ["home/control", "home/same", "home/diverse", "home/old"]
    metric = "ndcg@10"
    # an arm with no overrides ranks as serving does (the lambda variant); the popular-only control as popular
    assert arms["variants"]["home/same"][metric] == pytest.approx(plain["variants"]["lambda"][metric], rel=1e-9)
    assert arms["variants"]["home/control"][metric] == pytest.approx(plain["variants"]["popular"][metric], rel=1e-9)
    assert arms["variants"]["home/diverse"][metric] != arms["variants"]["home/same"][metric]
    assert "replay.pinned_arm" in notes and "20240101T000000000Z-abc123" in notes


def test_an_unknown_experiment_exits_2(drift_log: Path, small_config: Path) -> None:
    proc = run_cli("replay", "-i", str(drift_log), "--split-at", SPLIT.isoformat(), "--experiment", "nope",
                   "--config", str(small_config))  # fmt: skip
    assert proc.returncode == 2 and "--experiment 'nope' is not in the settings" in proc.stderr
