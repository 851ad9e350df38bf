"""What the deploy files and docs use from lambdarec (commands, flags, LAMBDAREC_* variables), checked against the
code, so a renamed flag or setting fails a test instead of a deployment."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer

from lambdarec.cli import app
from lambdarec.settings import ENV_PREFIX, PROGRAM_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs"

# Variables of the other tools that share our prefix: the test fixtures and deploy/local/services.
OTHER_TOOLS_VARIABLES = (
    "LAMBDAREC_TEST_",
    "LAMBDAREC_SERVICES_",
    "LAMBDAREC_CASSANDRA_",
    "LAMBDAREC_KAFKA_",
    "LAMBDAREC_JAVA",
    "LAMBDAREC_MVN",
    "LAMBDAREC_SEAWEEDFS_",
)

SHELL_FENCES = {"", "sh", "bash", "console", "shell"}
_SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1", ")", "&"}


def resolve(argv: list[str]) -> tuple[list[str], Any]:
    """The command that ``lambdarec ARGV`` runs; AssertionError naming what does not exist.

    Checks each subcommand name and each ``--flag`` against the command it reaches; positional values (a version,
    a file) are not checked. Groups are recognised by ``list_commands`` (typer vendors its own click).
    """
    cmd = typer.main.get_command(app)
    path, args = ["lambdarec"], list(argv)
    while hasattr(cmd, "list_commands") and args and not args[0].startswith("-"):
        sub = cmd.get_command(None, args[0])
        assert sub is not None, f"`{' '.join(path)}` has no command {args[0]!r} (in `lambdarec {' '.join(argv)}`)"
        path.append(args.pop(0))
        cmd = sub
    if hasattr(cmd, "list_commands"):
        assert cmd.invoke_without_command, f"`{' '.join(path)}` needs a subcommand (in `lambdarec {' '.join(argv)}`)"
    flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    for arg in args:
        if arg.startswith("-") and arg != "-":
            flag = arg.split("=", 1)[0]
            assert flag in flags, f"`{' '.join(path)}` has no option {flag} (in `lambdarec {' '.join(argv)}`)"
    return path, cmd


def commands_in_markdown(text: str) -> list[list[str]]:
    """The arguments of every ``lambdarec ...`` invocation in a Markdown text: in shell code blocks (also after
    ``kubectl exec ... --`` or ``VAR=value``) and in inline code that starts with ``lambdarec ``."""
    found = []
    # fences on lines of their own (each opens a block once), so a YAML block's closing fence never opens one
    for lang, block in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, flags=re.S | re.M):
        if lang not in SHELL_FENCES:  # a YAML or TOML block is read as such, not as shell lines
            continue
        for line in block.replace("\\\n", " ").splitlines():
            found.extend(_after_lambdarec(line))
    for span in re.findall(r"(?<!`)`(lambdarec [^`]+)`(?!`)", text):
        found.extend(_after_lambdarec(span))
    return found


def _after_lambdarec(line: str) -> list[list[str]]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise AssertionError(f"cannot split the shell line {line!r}: {exc}") from None
    runs = []
    for i, token in enumerate(tokens):
        # The command word: first on the line, after `VAR=value` assignments, or after `--` (kubectl exec);
        # not an option's value such as `kubectl -n lambdarec`.
        leading = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", t) for t in tokens[:i])
        if token != "lambdarec" or not (leading or tokens[i - 1] == "--"):
            continue
        args = []
        for t in tokens[i + 1 :]:
            if t in _SHELL_OPERATORS or t.startswith(("[", "<")):
                break
            args.append(t)
        runs.append(args)
    return runs


def env_names_in(text: str) -> set[str]:
    """``LAMBDAREC_*`` variable names in a text (placeholders such as ``LAMBDAREC_<SECTION>`` left out)."""
    return {m for m in re.findall(r"\bLAMBDAREC_[A-Z0-9_]*[A-Z0-9]\b", text)}


def is_setting_or_known(name: str) -> bool:
    """Whether ``name`` sets a field of the settings tree, or is one of the variables that are not settings."""
    if name in PROGRAM_VARIABLES or name.startswith(OTHER_TOOLS_VARIABLES):
        return True
    model: type = Settings
    for part in name.removeprefix(ENV_PREFIX).lower().split("__"):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True
