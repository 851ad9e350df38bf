"""``lambdarec speed``: run the speed-layer consumer."""

from __future__ import annotations

import json
import signal
from typing import Annotated

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

app = typer.Typer(help="Run the speed-layer consumer.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Run the speed-layer consumer."""


@app.command("run")
def run(
    log_url: Annotated[str | None, typer.Option("--log", help="Event log URL (log.url).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL (store.url).")] = None,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", help="Exit once the log has been drained for this many seconds."),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="Consumer group (log.consumer_group).")] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics on this port.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Consume events into fresh state until stopped (SIGTERM/SIGINT finish the batch in hand, then exit)."""
    from speed_layer.consumer import ConsumerHaltedError, SpeedConsumer

    overrides = {}
    if store:
        overrides["store"] = {"url": store}
    if log_url:
        overrides["log"] = {"url": log_url}
    settings = load_settings(config, overrides)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.serving.host)
    with SpeedConsumer(settings, group=group) as consumer:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: consumer.stop())
        try:
            stats = consumer.run(until_idle_s=until_idle)
        except ConsumerHaltedError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    body = stats.to_json()
    typer.echo(json.dumps(body) if as_json else "speed: " + ", ".join(f"{k} {v}" for k, v in body.items()))
