"""docs/: the configuration reference is what the code renders, every metric in the code is documented, and
every `lambdarec` command, flag and LAMBDAREC_* variable the docs show exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lambdarec.cli import app
from lambdarec.settings.reference import REGENERATE, render_reference

from .usage import DEPLOY, DOCS, ROOT, commands_in_markdown, env_names_in, is_setting_or_known, resolve

runner = CliRunner()
CONFIGURATION = DOCS / "configuration.md"
METRICS = DOCS / "metrics.md"
MARKDOWN = [*sorted(DOCS.glob("*.md")), DEPLOY / "README.md"]
METRIC_PACKAGES = ("lambdarec", "batch_layer", "speed_layer", "serving_layer", "replay")
# CounterMetricFamily: a collector's counter, built at scrape time
METRIC_TYPES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
                "Info": "info", "Enum": "stateset", "BatchHistogram": "histogram",
                "CounterMetricFamily": "counter"}  # fmt: skip


# ---- configuration reference -----------------------------------------------------------------------------------


def test_configuration_reference_is_up_to_date() -> None:
    assert CONFIGURATION.is_file(), f"docs/configuration.md is missing; run `{REGENERATE}`"
    if CONFIGURATION.read_text(encoding="utf-8") != render_reference():
        pytest.fail(f"docs/configuration.md differs from the settings in lambdarec/settings/; run `{REGENERATE}` "
                    "(or `make docs`) and commit the result", pytrace=False)  # fmt: skip


def test_reference_documents_every_field_with_its_env_var() -> None:
    from lambdarec.settings import Settings

    text = render_reference()
    for section, field in Settings.model_fields.items():
        if getattr(field.annotation, "__origin__", None) is dict:  # a table per name: [experiments.NAME]
            assert f"## `[{section}.NAME]`" in text and f"`LAMBDAREC_{section.upper()}`" in text
            continue
        assert f"## `[{section}]`" in text
        for name in field.annotation.model_fields:
            assert f"`LAMBDAREC_{section.upper()}__{name.upper()}`" in text, f"{section}.{name}"
    assert "`LAMBDAREC_BATCH__COLUMNS__USER_ID`" in text  # nested tables too
    assert "| `factors` | integer (≥ 2, ≤ 1024) | `64` |" in text
    assert "| `username` | string or unset | unset |" in text


def test_settings_doc_example_runs() -> None:
    import doctest

    import lambdarec.settings.reference

    result = doctest.testmod(lambdarec.settings.reference)
    assert result.attempted and not result.failed


def test_reference_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_BATCH__TRAIN__FACTORS", "8")
    assert "| `factors` | integer (≥ 2, ≤ 1024) | `64` |" in render_reference()


def test_config_reference_command_prints_writes_and_checks(tmp_path: Path) -> None:
    printed = runner.invoke(app, ["config", "reference"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == render_reference()

    out = tmp_path / "docs" / "configuration.md"
    written = runner.invoke(app, ["config", "reference", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == render_reference()
    assert runner.invoke(app, ["config", "reference", "--out", str(out), "--check"]).exit_code == 0

    out.write_text("stale\n", encoding="utf-8")
    stale = runner.invoke(app, ["config", "reference", "--out", str(out), "--check"])
    assert stale.exit_code == 1
    assert REGENERATE in stale.output
    assert out.read_text(encoding="utf-8") == "stale\n"  # --check writes nothing


# ---- metrics ---------------------------------------------------------------------------------------------------


def _metrics_in_code() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Exposed name -> (type, labels, where) for every prometheus_client metric constructed in the packages."""
    found = {}
    for package in METRIC_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in METRIC_TYPES and node.args):
                    continue
                first = node.args[0]
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    continue
                kind = METRIC_TYPES[node.func.id]
                labels_node = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg in ("labelnames", "labels")), None)  # fmt: skip
                labels = tuple(ast.literal_eval(labels_node)) if labels_node is not None else ()
                name = first.value
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"
                if kind == "info":
                    name += "_info"
                    labels = ("*",)  # an Info's labels are its value
                found[name] = (kind, labels, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _metrics_documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = re.findall(r"^\| `(lambdarec_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", METRICS.read_text(), flags=re.M)
    return {name: (kind, tuple(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_metrics_are_found_in_the_code() -> None:
    code = _metrics_in_code()
    assert "lambdarec_speed_events_total" in code
    assert code["lambdarec_speed_lag_records"][:2] == ("gauge", ("partition",))


def test_every_metric_in_the_code_is_documented() -> None:
    code, documented = _metrics_in_code(), _metrics_documented()
    missing = sorted(set(code) - set(documented))
    assert not missing, "add to docs/metrics.md: " + ", ".join(f"{n} ({code[n][0]}, {code[n][2]})" for n in missing)
    gone = sorted(set(documented) - set(code))
    assert not gone, f"docs/metrics.md documents metrics no code defines: {gone}"
    for name, (kind, labels, where) in code.items():
        doc_kind, doc_labels = documented[name]
        assert doc_kind == kind, f"{name} is a {kind} ({where}); docs/metrics.md says {doc_kind}"
        if labels != ("*",):
            assert doc_labels == labels, f"{name} has labels {labels} ({where}); docs/metrics.md says {doc_labels}"


# ---- commands and variables the docs show ----------------------------------------------------------------------


def test_docs_show_lambdarec_commands() -> None:
    commands = [c for path in MARKDOWN for c in commands_in_markdown(path.read_text())]
    groups = {c[0] for c in commands if c}
    assert {"batch", "snapshots", "speed", "serve", "store", "config"} <= groups


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_in_the_docs_exists(path: Path) -> None:
    for argv in commands_in_markdown(path.read_text()):
        if argv:
            resolve(argv)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_lambdarec_variable_in_the_docs_is_a_setting(path: Path) -> None:
    unknown = sorted(n for n in env_names_in(path.read_text()) if not is_setting_or_known(n))
    assert not unknown, f"{path.name} names variables that are no setting: {unknown}"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["batch", "run", "--jsn"], "has no option --jsn"),
        (["snapshots", "rollback", "v1"], "has no command 'rollback'"),
        (["snapshots"], "needs a subcommand"),
        (["speed", "run", "--metrics_port", "9100"], "has no option --metrics_port"),
    ],
)
def test_the_command_check_catches_drift(argv: list[str], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        resolve(argv)


def test_the_markdown_scan_finds_commands_in_blocks_and_inline_code() -> None:
    text = (
        "Run `lambdarec snapshots list` first.\n\n```sh\n"
        "kubectl exec deploy/x -- lambdarec batch run --as-of 2024-01-01 --json | jq .  # then\n"
        "LAMBDAREC_STORE__NAMESPACE=b lambdarec batch run \\\n  --force\n```\n"
    )
    assert commands_in_markdown(text) == [
        ["batch", "run", "--as-of", "2024-01-01", "--json"],
        ["batch", "run", "--force"],
        ["snapshots", "list"],
    ]
