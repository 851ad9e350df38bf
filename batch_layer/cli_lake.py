"""``lambdarec lake``: the master dataset. Import history, show, compact, vacuum, wait for the archiver.

Exit codes: 0 done; 1 the lake or the log failed; 2 bad input (a missing file, a bad time, a retention below
the safety floor); ``lake wait``: 75 when the timeout passed before the lake caught up (EX_TEMPFAIL: retry later).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings

EXIT_WAIT_TIMEOUT = 75

app = typer.Typer(help="The master dataset (Delta Lake): import, show, compact, vacuum, wait.", no_args_is_help=True)

LakeOption = Annotated[str | None, typer.Option("--lake", help="Lake URL (lake.url).")]


@app.callback()
def _group() -> None:
    """The master dataset (Delta Lake): import, show, compact, vacuum, wait."""


def _lake(config: Path | None, lake_url: str | None, log_url: str | None = None):  # type: ignore[no-untyped-def]
    from lambdarec.lake import open_lake

    settings = load_settings(
        config, {"lake": {"url": lake_url} if lake_url else None, "log": {"url": log_url} if log_url else None}
    )
    if settings.lake.url is None:
        typer.echo("error: no lake: set lake.url or pass --lake", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    return settings, open_lake(settings)


def cutoff_time(text: str, parse_time) -> float:  # type: ignore[no-untyped-def]
    """``--until``: ``now``, ``midnight`` (the latest 00:00 UTC: a nightly's day boundary), or a time."""
    now = time.time()
    if text.strip().lower() == "now":
        return now
    if text.strip().lower() == "midnight":
        return now - now % 86400
    return parse_time(text).timestamp()


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="Interaction logs (parquet/CSV) or public dataset files.")],
    lake_url: LakeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Append historical logs to the lake; a file whose content was imported before appends nothing."""
    from batch_layer.archive.imports import import_file
    from batch_layer.errors import BadInputError
    from lambdarec.lake import LakeError

    settings, lake = _lake(config, lake_url)
    results = []
    for path in files:
        try:
            results.append(import_file(lake, path, settings.batch).to_dict())
        except BadInputError as exc:
            raise _fail(str(exc), EXIT_BAD_INPUT) from None
        except LakeError as exc:
            raise _fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps({"files": results, "lake_version": lake.version()}, indent=2))
        return
    for r in results:
        what = "already imported, nothing appended" if r["already_imported"] else f"appended {r['appended']} rows"
        bad = f", refused {sum(r['bad_rows'].values())} bad rows {r['bad_rows']}" if r["bad_rows"] else ""
        typer.echo(f"{r['file']}: {what}{bad} (lake version {r['lake_version']})")


@app.command("show")
def show(
    version: Annotated[int | None, typer.Option("--version", help="Table version (default: latest).")] = None,
    lake_url: LakeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the table's version, rows, users, items, first and last event time and archived positions."""
    from lambdarec.lake import LakeError

    _, lake = _lake(config, lake_url)
    try:
        body = lake.summary(version)
    except LakeError as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        for key, value in body.items():
            typer.echo(f"{key:10} {value}")


@app.command("compact")
def compact(lake_url: LakeOption = None, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Rewrite small files into larger ones (a new table version; readers of older versions are unaffected)."""
    from lambdarec.lake import LakeError

    _, lake = _lake(config, lake_url)
    try:
        metrics = lake.compact()
    except LakeError as exc:
        raise _fail(str(exc), 1) from None
    body = {
        "files_added": metrics.get("numFilesAdded"),
        "files_removed": metrics.get("numFilesRemoved"),
        "version": lake.version(),
    }
    typer.echo(json.dumps(body) if as_json else f"compacted: {body}")


@app.command("vacuum")
def vacuum(
    retain_hours: Annotated[
        float, typer.Option("--retain-hours", help="Keep files any version this recent may need (>= the floor).")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the files without removing them.")] = False,
    lake_url: LakeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove files no longer referenced by any version younger than --retain-hours (deleted rows included)."""
    from lambdarec.lake import LakeError

    _, lake = _lake(config, lake_url)
    try:
        removed = lake.vacuum(retain_hours, dry_run=dry_run)
    except LakeError as exc:
        raise _fail(str(exc), EXIT_BAD_INPUT) from None
    body = {"dry_run": dry_run, "files": len(removed)}
    typer.echo(
        json.dumps(body) if as_json else f"vacuum: {'would remove' if dry_run else 'removed'} {len(removed)} files"
    )


@app.command("wait")
def wait(
    until: Annotated[
        str,
        typer.Option("--until", help="Cut-off: ISO-8601, epoch s/ms, `now`, or `midnight` (the latest 00:00 UTC)."),
    ],
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after this many seconds (exit 75).")] = 3600.0,
    log_url: Annotated[str | None, typer.Option("--log", help="Event log URL (log.url).")] = None,
    lake_url: LakeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until the lake holds every event appended to the log (and the impressions log) before --until.

    Exit 0 when it does, 75 when --timeout passed first, 1 when the lake or the log failed, 2 on a bad time.
    """
    from batch_layer.archive.wait import wait_for_archive
    from batch_layer.errors import BadInputError
    from batch_layer.interactions import parse_time
    from lambdarec.eventlog import EventLogError, open_impressions_log, open_log
    from lambdarec.lake import LakeError

    try:
        until_s = cutoff_time(until, parse_time)
    except BadInputError as exc:
        raise _fail(f"--until: {exc}", EXIT_BAD_INPUT) from None
    settings, lake = _lake(config, lake_url, log_url)
    try:
        with open_log(settings) as log:
            result = wait_for_archive(lake, log, until_s, timeout)
        body = result.to_dict()
        if result.reached and settings.log.impressions_topic is not None:  # the impressions log too
            with open_impressions_log(settings) as own:
                result = wait_for_archive(lake, own, until_s, max(timeout - result.waited_s, 0.0), source="impressions")
            body |= {"reached": result.reached, "impressions": result.to_dict()}
    except (LakeError, EventLogError) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(json.dumps(body) if as_json else ("lake caught up: " if result.reached else "timed out: ") + str(body))
    if not result.reached:
        raise typer.Exit(EXIT_WAIT_TIMEOUT)
