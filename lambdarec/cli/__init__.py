"""The ``lambdarec`` command: a thin root that mounts each group lazily.

The shared core imports no layer: a group is named here by ``module:attribute`` and imported only when it is
asked for. A group's module imports its heavy libraries (torch, FAISS, implicit) inside the commands, so
``lambdarec --help`` and ``lambdarec config`` stay fast.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import typer
from typer.core import TyperGroup

from lambdarec import __version__

# name -> "module:attribute" of a typer app. Order is the order --help shows.
GROUPS: dict[str, str] = {
    "demo": "demo.cli:app",
    "datasets": "batch_layer.cli_datasets:app",
    "batch": "batch_layer.cli:app",
    "archive": "batch_layer.cli_archive:app",
    "lake": "batch_layer.cli_lake:app",
    "forget": "lambdarec.cli.forget:forget",
    "snapshots": "lambdarec.cli.snapshots:app",
    "store": "lambdarec.cli.store:app",
    "events": "lambdarec.cli.events:app",
    "items": "lambdarec.cli.items:app",
    "speed": "speed_layer.cli:app",
    "serve": "serving_layer.cli:serve_app",
    "recommend": "serving_layer.cli:recommend_app",
    "replay": "replay.cli:app",
    "experiments": "lambdarec.cli.experiments:app",
    "config": "lambdarec.cli.config:app",
}


class LazyGroup(TyperGroup):
    """The root group: a subcommand's module is imported only when it is asked for."""

    def list_commands(self, ctx) -> list[str]:  # type: ignore[no-untyped-def]
        return list(GROUPS)

    def get_command(self, ctx, cmd_name: str):  # type: ignore[no-untyped-def]
        if cmd_name not in GROUPS:
            return None
        module_name, attr = GROUPS[cmd_name].split(":")
        obj = getattr(importlib.import_module(module_name), attr)
        cmd = typer.main.get_command(obj) if isinstance(obj, typer.Typer) else obj
        cmd.name = cmd_name
        return cmd


app = typer.Typer(
    cls=LazyGroup,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold URLs and settings; main() prints a masked traceback
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="lambdarec: a Lambda-architecture recommender. A nightly batch layer precomputes top-K candidates "
    "into the store, a speed layer folds in fresh events from the log, and the serving layer merges both and "
    "re-ranks with the session.\n\nSettings come from --config PATH (or $LAMBDAREC_CONFIG) and LAMBDAREC_* "
    "variables, nested keys joined by '__' (LAMBDAREC_STORE__URL).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lambdarec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    from lambdarec.logs import configure_logging

    configure_logging()


def main() -> None:
    """Console-script entry point. An unexpected error's traceback is printed with every secret masked."""
    try:
        code = app(prog_name="lambdarec", standalone_mode=True)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # typer would print it with its locals, where URLs and passwords live
        from lambdarec.masking import mask_secrets

        text = "".join(traceback.format_exception(exc))
        sys.stderr.write(mask_secrets(text))
        sys.exit(1)
    sys.exit(code)
