"""What every command shares: the --config option and turning bad settings into a clear exit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lambdarec.settings import ConfigError, Settings

EXIT_BAD_INPUT = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: $LAMBDAREC_CONFIG).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def load_settings(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings for a command; a bad key or value ends the command with exit code 2 and the reason."""
    try:
        return Settings.load(config, overrides={k: v for k, v in (overrides or {}).items() if v})
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
