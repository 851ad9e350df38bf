"""``lambdarec archive``: the archiver, event log -> lake, exactly once.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or drained with ``--until-idle``), 1 the lake or the log failed
for longer than ``archive.give_up_after_s`` (by default it waits for them forever), 2 bad settings.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

app = typer.Typer(help="The archiver: event log -> master dataset (lake), exactly once.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """The archiver: event log -> master dataset (lake), exactly once."""


@app.command("run")
def run(
    log_url: Annotated[str | None, typer.Option("--log", help="Event log URL (log.url).")] = None,
    lake_url: Annotated[str | None, typer.Option("--lake", help="Lake URL (lake.url).")] = None,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", help="Exit once the whole log has been archived for this many seconds."),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="Consumer group (archive.consumer_group).")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve /metrics, /readyz and /livez on this port."),
    ] = None,
    impressions: Annotated[
        bool,
        typer.Option(
            "--impressions",
            help="Archive the impressions log (log.impressions_topic) instead, in group archive.consumer_group + "
            "`-impressions`; its rows say source = impressions. Run one of each.",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Archive events into the lake until stopped (SIGTERM/SIGINT finish the micro-batch in hand, then exit).

    --json prints {"archived", "dead_lettered", "lake_version", "positions"}: positions maps each log
    partition to the next offset not yet archived. A log or lake that does not answer is waited out with
    backoff (archive.retry_*), /readyz saying what it waits for, until archive.give_up_after_s (0: forever).
    With log.impressions_topic set, run a second archiver with --impressions for that log.
    """
    from batch_layer.archive import Archiver
    from batch_layer.archive.archiver import RETRIED
    from batch_layer.archive.health import ArchiveHealth, serve_health
    from lambdarec.pollloop import run_until_stopped

    settings = load_settings(
        config, {"log": {"url": log_url} if log_url else None, "lake": {"url": lake_url} if lake_url else None}
    )
    if settings.lake.url is None:
        typer.echo("error: no lake: set lake.url or pass --lake", err=True)
        raise typer.Exit(2)
    if impressions and settings.log.impressions_topic is None:
        typer.echo("error: --impressions needs log.impressions_topic (without it impressions are in log.url's topic, "
                   "which the archiver without --impressions archives)", err=True)  # fmt: skip
        raise typer.Exit(2)
    health = ArchiveHealth()
    if metrics_port:
        serve_health(health, settings.serving.host, metrics_port)
    try:
        stats = run_until_stopped(
            Archiver,
            lambda: Archiver(settings, group=group, health=health, impressions=impressions),
            settings.archive,
            health,
            until_idle,
        )
    except RETRIED as exc:  # only after archive.give_up_after_s
        typer.echo(
            f"error: gave up after archive.give_up_after_s ({settings.archive.give_up_after_s:g} s): "
            f"{type(exc).__name__}: {exc}",
            err=True,
        )
        raise typer.Exit(1) from None
    if stats is None:  # stopped while waiting for the log
        raise typer.Exit(0)
    body = stats.to_json()
    if as_json:
        typer.echo(json.dumps(body))
    else:
        typer.echo(
            f"archive: archived {body['archived']}, dead-lettered {body['dead_lettered']}, "
            f"lake version {body['lake_version']}, positions {body['positions']}"
        )
