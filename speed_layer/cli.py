"""``lambdarec speed``: run the speed-layer consumer."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from lambdarec.backoff import Backoff
from lambdarec.cli.common import ConfigOption, JsonOption, load_settings
from lambdarec.settings import Settings

if TYPE_CHECKING:
    from speed_layer.consumer import SpeedConsumer
    from speed_layer.health import SpeedHealth

EXIT_GAVE_UP = 1

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
    """Consume events into fresh state until stopped (SIGTERM/SIGINT finish the batch in hand, then exit).

    A log or store that does not answer (at start or later) is waited out with backoff and the consumer resumes
    by itself; `--metrics-port` serves /readyz (503 with `waiting_for` meanwhile), /livez and /metrics.
    Exit codes: 0 stopped or drained; 1 gave up after speed.give_up_after_s, or halted on a streak of failing
    records (events.max_consecutive_failures); 2 bad settings.
    """
    from lambdarec.eventlog import EventLogError
    from lambdarec.store import StoreError
    from speed_layer.consumer import ConsumerHaltedError
    from speed_layer.health import SpeedHealth, serve_health

    overrides = {}
    if store:
        overrides["store"] = {"url": store}
    if log_url:
        overrides["log"] = {"url": log_url}
    settings = load_settings(config, overrides)
    health = SpeedHealth()
    if metrics_port:
        serve_health(health, settings.serving.host, metrics_port)
    stop: list[bool] = []  # set by a signal, before or after the consumer exists
    running: list[SpeedConsumer] = []

    def on_signal(*_: object) -> None:
        stop.append(True)
        for c in running:
            c.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        consumer = _connect(settings, group, health, lambda: bool(stop))
        if consumer is None:  # stopped while waiting for the log or the store
            raise typer.Exit(0)
        with consumer:
            running.append(consumer)
            if stop:
                consumer.stop()
            stats = consumer.run(until_idle_s=until_idle)
    except ConsumerHaltedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (EventLogError, StoreError) as exc:  # only after speed.give_up_after_s
        typer.echo(
            f"error: gave up after speed.give_up_after_s ({settings.speed.give_up_after_s:g} s): {exc}", err=True
        )
        raise typer.Exit(EXIT_GAVE_UP) from None
    body = stats.to_json()
    typer.echo(json.dumps(body) if as_json else "speed: " + ", ".join(f"{k} {v}" for k, v in body.items()))


def _connect(
    settings: Settings, group: str | None, health: SpeedHealth, stopping: Callable[[], bool]
) -> SpeedConsumer | None:
    """A consumer connected to the log and the store, waiting them out with backoff; None if stopped first."""
    from lambdarec.eventlog import EventLogError
    from lambdarec.store import StoreError
    from speed_layer.consumer import SpeedConsumer

    speed = settings.speed
    backoff = Backoff(speed.retry_initial_s, speed.retry_max_s, speed.give_up_after_s)
    while not stopping():
        try:
            return SpeedConsumer(settings, group=group, health=health)
        except (EventLogError, StoreError) as exc:
            health.waiting("store" if isinstance(exc, StoreError) else "log", f"{type(exc).__name__}: {exc}")
            if backoff.expired():
                raise
            backoff.sleep(stopping)
    return None
