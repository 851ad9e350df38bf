"""``lambdarec config``: the effective settings, and the configuration reference generated from the settings tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import tomlkit
import typer
from pydantic import BaseModel, SecretStr

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
        notes: list[str] = []
        kept = _kept(getattr(settings, section), values, (section,), notes)
        head, _, body = tomlkit.dumps({section: kept}).partition("\n")
        parts.append("\n".join([head, *notes, body]).rstrip("\n") + "\n")
    return "\n".join(parts)


def _kept(model: BaseModel, values: dict[str, Any], path: tuple[str, ...], notes: list[str]) -> dict[str, Any]:
    """``values`` (a table of ``model``) less unset values and secrets, which become ``notes``; sub-tables alike."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        field = getattr(model, key)
        name, env = ".".join((*path[1:], key)), "$" + ENV_PREFIX + "__".join((*path, key)).upper()
        if isinstance(field, SecretStr):
            notes.append(f"# {name}: set, not shown; give it with {env}")
        elif value is None:
            notes.append(f"# {name}: unset")
        elif isinstance(field, BaseModel):
            kept[key] = _kept(field, value, (*path, key), notes)
        else:
            kept[key] = value
            if key == "url" and value != field:
                notes.append(f"# {name}: its password is masked; give the whole URL with {env}")
    return kept


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
