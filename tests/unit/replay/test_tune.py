"""The weight search's draws and the settings file it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import ConfigError, Settings
from replay.tune import draw_trials, weights_dict, write_settings_toml


def test_trials_start_with_the_current_weights_and_are_seeded() -> None:
    base = MergeWeights(cf=1.0, session=0.3)
    trials = draw_trials(base, 20, seed=5)
    assert trials[0] == base and len(trials) == 20
    assert trials == draw_trials(base, 20, seed=5)
    assert trials != draw_trials(base, 20, seed=6)
    for w in trials[1:]:
        assert 0.25 <= w.cf <= 2.0 and 0 <= w.session <= 4.0 and 0 <= w.trending <= 1.0
        assert 300 <= w.session_half_life_s <= 7 * 86400 and 0 <= w.mmr_lambda <= 0.3


def test_the_settings_file_loads_back_as_the_serving_weights(tmp_path: Path) -> None:
    weights = weights_dict(MergeWeights(cf=0.8, session=1.25, trending=0.0, session_half_life_s=600.0, mmr_lambda=0.1))
    path = write_settings_toml(weights, tmp_path / "sub" / "tuned.toml", "tuned on a validation window\nline two")
    text = path.read_text()
    assert text.startswith("# tuned on a validation window\n# line two\n[serving]\n")
    serving = Settings.load(path).serving
    assert MergeWeights.from_settings(serving) == MergeWeights(0.8, 1.25, 0.0, 600.0, 0.1)


def test_an_invalid_weight_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mmr_lambda"):
        write_settings_toml({"mmr_lambda": 3.0}, tmp_path / "tuned.toml", "bad")
    assert list(tmp_path.iterdir()) == []
