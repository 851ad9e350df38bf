"""``lambdarec experiments assign``: the arms serving would give, from the settings alone."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.experiments import assign_arm
from lambdarec.settings import ExperimentSettings

CONFIG = '[experiments.home]\nsalt = "s"\ntraffic = 0.5\n[[experiments.home.arms]]\nname = "a"\n' \
         '[[experiments.home.arms]]\nname = "b"\n'  # fmt: skip


def test_assign_prints_each_experiments_arm(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text(CONFIG)
    exp = ExperimentSettings(salt="s", traffic=0.5, arms=[{"name": "a"}, {"name": "b"}])
    seen = set()
    for n in range(30):
        user = f"u{n}"
        out = CliRunner().invoke(app, ["experiments", "assign", user, "--json", "--config", str(config)])
        assert out.exit_code == 0, out.output
        (found,) = json.loads(out.stdout)["assignments"]
        assert found["arm"] == assign_arm(exp, user) and found["served"] == (found["arm"] is not None)
        seen.add(found["arm"])
    assert seen == {"a", "b", None}
    text = CliRunner().invoke(app, ["experiments", "assign", "s-1", "--session", "--config", str(config)]).stdout
    assert text.startswith("home: ")
