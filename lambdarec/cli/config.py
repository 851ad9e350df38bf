"""``lambdarec config``: the effective settings, and the configuration reference generated from the settings tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import tomli_w
import typer
from pydantic import SecretStr

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.settings import ENV_PREFIX, Settings
from lambdarec.settings.reference import REGENERATE, render_reference

EXIT_STALE = 1

app = typer.Typer(
    help="Show the effective settings; write the configuration reference.", no_args_is_help=True, add_completion=False
)


@app.callback()
def _group() -> None:
    """Show the effective settings; write the configuration reference."""


@app.command("show")
def show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective settings (file, environment and defaults merged) with secrets masked."""
    settings = load_settings(config)
    if as_json:
        typer.echo(json.dumps(settings.masked(), indent=2, sort_keys=True))
        return
    typer.echo(settings_toml(settings), nl=False)


def settings_toml(settings: Settings) -> str:
    """The settings as a TOML file that loads back as the same settings.

    TOML has no null: an unset field is a comment. A secret is never printed, not even masked (a loaded-back
    mask would be a wrong password): a comment names the variable that gives it.
    """
    data = settings.masked()
    parts = []
    for section, values in data.items():
        model = getattr(settings, section)
        notes, kept = [], {}
        for key, value in values.items():
            env = f"${ENV_PREFIX}{section.upper()}__{key.upper()}"
            if isinstance(getattr(model, key), SecretStr):
                notes.append(f"# {key}: set, not shown; give it with {env}")
            elif value is None:
                notes.append(f"# {key}: unset")
            else:
                kept[key] = value
                if key == "url" and value != getattr(model, key):
                    notes.append(f"# url: its password is masked; give the whole URL with {env}")
        head, _, body = tomli_w.dumps({section: kept}).partition("\n")
        parts.append("\n".join([head, *notes, body]).rstrip("\n") + "\n")
    return "\n".join(parts)


@app.command("reference")
def reference(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the reference to this file instead of stdout.", show_default=False),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the --out file differs from the reference.")
    ] = False,
) -> None:
    """Print every setting (key, type, default, environment variable, description) as Markdown: the text of
    docs/configuration.md. It comes from the code alone, never from the environment or a config file."""
    text = render_reference()
    if check:
        if out is None:
            typer.echo("error: --check needs --out PATH, the file to compare", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            typer.echo(f"{out} is out of date with the settings; run `{REGENERATE}`", err=True)
            raise typer.Exit(EXIT_STALE)
        typer.echo(f"{out} is up to date")
        return
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}", err=True)
