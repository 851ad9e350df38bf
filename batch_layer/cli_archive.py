"""``lambdarec archive``: the archiver, event log -> lake, exactly once.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT, or drained with ``--until-idle``), 1 the lake or the log failed
for longer than ``archive.give_up_after_s`` (by default it waits for them forever), 2 bad settings.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

if TYPE_CHECKING:
    from batch_layer.archive import Archiver
    from batch_layer.archive.health import ArchiveHealth
    from lambdarec.settings import Settings

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
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Archive events into the lake until stopped (SIGTERM/SIGINT finish the micro-batch in hand, then exit).

    --json prints {"archived", "dead_lettered", "lake_version", "positions"}: positions maps each log
    partition to the next offset not yet archived. A log or lake that does not answer is waited out with
    backoff (archive.retry_*), /readyz saying what it waits for, until archive.give_up_after_s (0: forever).
    """
    from batch_layer.archive.archiver import RETRIED
    from batch_layer.archive.health import ArchiveHealth, serve_health

    settings = load_settings(
        config, {"log": {"url": log_url} if log_url else None, "lake": {"url": lake_url} if lake_url else None}
    )
    if settings.lake.url is None:
        typer.echo("error: no lake: set lake.url or pass --lake", err=True)
        raise typer.Exit(2)
    health = ArchiveHealth()
    if metrics_port:
        serve_health(health, settings.serving.host, metrics_port)
    stop: list[bool] = []  # set by a signal, before or after the archiver exists
    running: list[Archiver] = []

    def on_signal(*_: object) -> None:
        stop.append(True)
        for a in running:
            a.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        archiver = _connect(settings, group, health, lambda: bool(stop))
        if archiver is None:  # stopped while waiting for the log
            raise typer.Exit(0)
        with archiver:
            running.append(archiver)
            if stop:
                archiver.stop()
            stats = archiver.run(until_idle_s=until_idle)
    except RETRIED as exc:  # only after archive.give_up_after_s
        typer.echo(
            f"error: gave up after archive.give_up_after_s ({settings.archive.give_up_after_s:g} s): "
            f"{type(exc).__name__}: {exc}",
            err=True,
        )
        raise typer.Exit(1) from None
    body = stats.to_json()
    if as_json:
        typer.echo(json.dumps(body))
    else:
        typer.echo(
            f"archive: archived {body['archived']}, dead-lettered {body['dead_lettered']}, "
            f"lake version {body['lake_version']}, positions {body['positions']}"
        )


def _connect(
    settings: Settings, group: str | None, health: ArchiveHealth, stopping: Callable[[], bool]
) -> Archiver | None:
    """An archiver joined to its group, waiting out a log that does not answer; None if stopped first."""
    from batch_layer.archive import Archiver
    from batch_layer.archive.archiver import RETRIED
    from lambdarec.backoff import Backoff
    from lambdarec.eventlog import EventLogError

    cfg = settings.archive
    backoff = Backoff(cfg.retry_initial_s, cfg.retry_max_s, cfg.give_up_after_s)
    while not stopping():
        try:
            return Archiver(settings, group=group, health=health)
        except RETRIED as exc:
            health.waiting("log" if isinstance(exc, EventLogError) else "lake", f"{type(exc).__name__}: {exc}")
            if backoff.expired():
                raise
            backoff.sleep(stopping)
    return None
