"""``lambdarec archive``: the archiver, event log -> lake, exactly once.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or drained with ``--until-idle``), 1 the lake or the log failed,
2 bad settings.
"""

from __future__ import annotations

import json
import signal
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
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Archive events into the lake until stopped (SIGTERM/SIGINT finish the micro-batch in hand, then exit).

    --json prints {"archived", "dead_lettered", "lake_version", "positions"}: positions maps each log
    partition to the next offset not yet archived.
    """
    from batch_layer.archive import Archiver
    from lambdarec.lake import LakeError
    from lambdarec.log import EventLogError

    settings = load_settings(
        config, {"log": {"url": log_url} if log_url else None, "lake": {"url": lake_url} if lake_url else None}
    )
    if settings.lake.url is None:
        typer.echo("error: no lake: set lake.url or pass --lake", err=True)
        raise typer.Exit(2)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.serving.host)
    try:
        with Archiver(settings, group=group) as archiver:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: archiver.stop())
            stats = archiver.run(until_idle_s=until_idle)
    except (LakeError, EventLogError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    body = stats.to_json()
    if as_json:
        typer.echo(json.dumps(body))
    else:
        typer.echo(
            f"archive: archived {body['archived']}, dead-lettered {body['dead_lettered']}, "
            f"lake version {body['lake_version']}, positions {body['positions']}"
        )
