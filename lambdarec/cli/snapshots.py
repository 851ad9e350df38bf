"""``lambdarec snapshots``: list, show, activate (roll back) and prune the store's snapshot versions.

Exit codes: 0 done; 1 the store failed or cannot be reached; 2 a wrong input (unknown version, a version that
cannot be activated, a bad setting); 3 (``activate``) the snapshot failed its checks (a checksum, a row count, an
item outside the catalogue): it was not activated and the current snapshot is unchanged.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from lambdarec.cli.common import ConfigOption, JsonOption
from lambdarec.cli.store import StoreOption, configure_cli_logging, open_cli_store, store_errors
from lambdarec.model.snapshot import check_snapshot
from lambdarec.store import SnapshotInfo, ValidationFailedError

EXIT_INVALID_SNAPSHOT = 3

app = typer.Typer(
    help="List, show, activate (roll back) and prune snapshots.", no_args_is_help=True, add_completion=False
)

VersionArg = Annotated[str, typer.Argument(help="A snapshot version, as `lambdarec snapshots list` prints it.")]


@app.callback()
def _group() -> None:
    """List, show, activate (roll back) and prune snapshots."""
    configure_cli_logging()


def _counts(info: SnapshotInfo) -> tuple[Any, Any]:
    counts = (info.manifest or {}).get("counts", {})
    return counts.get("user_rows", "-"), counts.get("item_rows", "-")


def _when(info: SnapshotInfo) -> str:
    return info.created_at.strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_(config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every snapshot version, newest first; `*` marks the current one."""
    _, opened = open_cli_store(config, store)
    with opened, store_errors():
        infos = opened.list_snapshots()
    if as_json:
        typer.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    if not infos:
        typer.echo("no snapshots yet: the batch job publishes the first one")
        return
    typer.echo(f"  {'VERSION':<28} {'STATE':<10} {'CREATED (UTC)':<20} {'USERS':>10} {'ITEMS':>10}")
    for info in infos:
        users, items = _counts(info)
        mark = "*" if info.current else " "
        typer.echo(f"{mark} {info.version:<28} {info.state:<10} {_when(info):<20} {users!s:>10} {items!s:>10}")


@app.command("show")
def show(
    version: VersionArg, config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """One version: state, whether it is current, times, metadata and manifest."""
    _, opened = open_cli_store(config, store)
    with opened, store_errors():
        info = opened.get_snapshot(version)
    data = info.to_json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key in ("version", "state", "current", "created_at", "published_at"):
        typer.echo(f"{key:<13} {data[key]}")
    typer.echo(f"{'meta':<13} {json.dumps(data['meta'], sort_keys=True)}")
    typer.echo(f"{'manifest':<13} {json.dumps(data['manifest'], sort_keys=True)}")


@app.command("activate")
def activate(
    version: VersionArg, config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Make an already published version current (rollback). Serving swaps within serving.snapshot_poll_s.

    The version is checked first (row counts, array checksums, item rows, store.activate_check_users user rows);
    one that fails exits 3 and the pointer does not move."""
    settings, opened = open_cli_store(config, store)
    with opened, store_errors():
        previous = opened.current_version(max_age_s=0)
        problems = check_snapshot(opened, version, settings.store.activate_check_users)
        try:
            if problems:
                raise ValidationFailedError(version, problems)
            opened.activate(version)
        except ValidationFailedError as exc:
            typer.echo(f"error: {exc}; the current pointer still names {previous or 'no snapshot'}", err=True)
            raise typer.Exit(EXIT_INVALID_SNAPSHOT) from None
    if as_json:
        typer.echo(json.dumps({"version": version, "previous": previous}))
    else:
        typer.echo(f"snapshot {version} is current (was {previous or 'none'})")


@app.command("prune")
def prune(
    keep: Annotated[
        int | None, typer.Option("--keep", min=1, help="Published versions to keep (default: store.keep_versions).")
    ] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retire published versions beyond the newest KEEP (never the current one) and abandoned writes."""
    settings, opened = open_cli_store(config, store)
    keep = keep or settings.store.keep_versions
    with opened, store_errors():
        retired = opened.prune(keep)
    if as_json:
        typer.echo(json.dumps({"keep": keep, "retired": retired}))
    elif retired:
        typer.echo(f"retired {len(retired)} version(s), kept the newest {keep} published:")
        for version in retired:
            typer.echo(f"  {version}")
    else:
        typer.echo(f"nothing to retire (keeping the newest {keep} published)")
