"""``lambdarec forget USER...``: erase users from the lake, the fresh state and every response;
``lambdarec forget --reapply``: write the erasures the lake recorded into the store again (after the fresh state
was cleared to be rebuilt from the log).

Exit codes: 0 erased; 1 the store, the log or the lake failed (run it again: every step is idempotent);
2 bad input.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings

forget = typer.Typer(help="Erase users: lake rows, fresh state, and every response.", no_args_is_help=True)


@forget.command()
def run(
    users: Annotated[list[str] | None, typer.Argument(metavar="USER...", help="User ids to erase.")] = None,
    reapply: Annotated[
        bool,
        typer.Option(
            "--reapply",
            help="Erase nobody new: write every erasure the lake recorded into the store again (after clearing "
            "the fresh state to rebuild it from the log, before the speed consumers start).",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase USER...: delete their lake rows, replace their fresh state with a tombstone that hides them at once.

    The next nightly snapshot lacks them. Older lake versions keep the files until `lambdarec lake vacuum`.
    """
    from lambdarec.erasure import forget_users, reapply_erasures
    from lambdarec.eventlog import EventLogError
    from lambdarec.lake import LakeError
    from lambdarec.store import StoreError

    settings = load_settings(config)
    try:
        if reapply:
            if users:
                raise ValueError("--reapply erases nobody new: name no USER with it")
            count = reapply_erasures(settings)
            typer.echo(json.dumps({"reapplied": count}) if as_json else f"wrote {count} recorded erasure(s) again")
            return
        result = forget_users(settings, users or [])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (LakeError, EventLogError, StoreError, OSError) as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}; nothing is lost by running forget again", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(
        f"forgot {len(result.users)} user(s): {result.lake_rows_deleted} lake rows deleted "
        f"(lake version {result.lake_version}), fresh state replaced by tombstones"
    )
    typer.echo(f"vacuum: {result.vacuum}")
