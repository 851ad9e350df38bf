"""``lambdarec speed``: run the speed-layer consumer."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

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
    impressions: Annotated[
        bool,
        typer.Option(
            "--impressions",
            help="Run the impressions consumer (speed.feedback.own_consumer): only `impression` events, into their "
            "own store rows, in group speed.feedback.impressions_group; from log.impressions_topic when set.",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Consume events into fresh state until stopped (SIGTERM/SIGINT finish the batch in hand, then exit).

    A log or store that does not answer (at start or later) is waited out with backoff and the consumer resumes
    by itself; `--metrics-port` serves /readyz (503 with `waiting_for` meanwhile), /livez and /metrics.
    With `--impressions`, run the impressions consumer instead (speed.feedback.own_consumer: only `impression`
    events, into their own store rows; the positive-event consumer skips them), at the CPU niceness
    speed.feedback.impressions_nice (10) so that on shared cores positive events are applied first. Run one of each.
    Exit codes: 0 stopped or drained; 1 gave up after speed.give_up_after_s, or halted on a streak of failing
    records (events.max_consecutive_failures); 2 bad settings.
    """
    from lambdarec.eventlog import EventLogError
    from lambdarec.pollloop import run_until_stopped
    from lambdarec.store import StoreError
    from speed_layer.consumer import ConsumerHaltedError, SpeedConsumer
    from speed_layer.health import SpeedHealth, serve_health
    from speed_layer.impression_consumer import ImpressionConsumer, lower_priority

    overrides = {}
    if store:
        overrides["store"] = {"url": store}
    if log_url:
        overrides["log"] = {"url": log_url}
    settings = load_settings(config, overrides)
    health = SpeedHealth()
    kind = ImpressionConsumer if impressions else SpeedConsumer
    if impressions and not settings.speed.feedback.own_consumer:
        typer.echo("error: --impressions needs speed.feedback.own_consumer = true (else the positive-event "
                   "consumer applies impressions too, and they would count twice)", err=True)  # fmt: skip
        raise typer.Exit(2)
    if impressions:
        lower_priority(settings)  # speed.feedback.impressions_nice: on shared cores the positive path runs first
    if metrics_port:
        serve_health(health, settings.serving.host, metrics_port)
    try:
        stats = run_until_stopped(
            kind,
            lambda: kind(settings, group=group, health=health),
            settings.speed,
            health,
            until_idle,
        )
    except ConsumerHaltedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (EventLogError, StoreError) as exc:  # only after speed.give_up_after_s
        typer.echo(
            f"error: gave up after speed.give_up_after_s ({settings.speed.give_up_after_s:g} s): {exc}", err=True
        )
        raise typer.Exit(EXIT_GAVE_UP) from None
    if stats is None:  # stopped while waiting for the log or the store
        raise typer.Exit(0)
    body = stats.to_json()
    typer.echo(json.dumps(body) if as_json else "speed: " + ", ".join(f"{k} {v}" for k, v in body.items()))
