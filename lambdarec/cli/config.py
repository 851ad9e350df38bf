"""``lambdarec config``: the effective settings."""

from __future__ import annotations

import json

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

app = typer.Typer(help="Show the effective settings.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Show the effective settings."""


@app.command("show")
def show(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print the effective settings (file, environment and defaults merged) with secrets masked."""
    data = load_settings(config).masked()
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    for section, values in data.items():
        typer.echo(f"[{section}]")
        for key, value in values.items():
            typer.echo(f"{key} = {json.dumps(value)}")
        typer.echo("")
