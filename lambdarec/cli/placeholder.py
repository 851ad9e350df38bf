"""Command groups whose issue has not landed yet. Each says so plainly and exits non-zero; none pretends."""

from __future__ import annotations

import typer

NOT_BUILT_EXIT = 3


def _not_built(name: str, what: str) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command(
        name=name,
        help=f"{what} NOT BUILT YET: exits {NOT_BUILT_EXIT} without doing anything.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def command(ctx: typer.Context) -> None:
        typer.echo(f"lambdarec {name}: not built yet ({what.rstrip('.').lower()}). Nothing was done.", err=True)
        raise typer.Exit(NOT_BUILT_EXIT)

    return app


demo = _not_built("demo", "The end-to-end demo on embedded defaults.")
datasets = _not_built("datasets", "Dataset import and synthesis.")
batch = _not_built("batch", "The nightly batch job.")
snapshots = _not_built("snapshots", "Snapshot listing, rollback and pruning.")
store = _not_built("store", "Store initialisation.")
events = _not_built("events", "Appending events to the event log.")
speed = _not_built("speed", "The speed-layer consumer.")
serve = _not_built("serve", "The HTTP serving layer.")
recommend = _not_built("recommend", "In-process recommendations for one user.")
replay = _not_built("replay", "Offline replay evaluation.")
