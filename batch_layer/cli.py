"""``lambdarec batch``: the nightly job from a shell, cron, Airflow or a Kubernetes CronJob.

Exit codes: 0 published or nothing to do, 1 other failure, 2 bad input, 3 quality gate, 4 locked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from lambdarec.cli.common import ConfigOption, JsonOption, load_settings

app = typer.Typer(help="The nightly job: interactions -> model -> published snapshot.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """The nightly job: interactions -> model -> published snapshot."""


@app.command("run")
def run(
    interactions: Annotated[
        str | None,
        typer.Option(
            "--interactions", "-i", help="Parquet/CSV file, glob or folder (batch.interactions); default: the lake."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Cut-off: ISO-8601 or epoch s/ms; later events are ignored. Default: the newest event time in "
            "the input that is not in the future.",
        ),
    ] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store URL (store.url).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Publish even if unchanged or if the quality gate refuses.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
    lake_version: Annotated[
        int | None,
        typer.Option("--lake-version", help="Read this lake table version (reproduces a run; default: latest)."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the nightly job once and publish a new snapshot if the inputs changed and the model passes the gate."""
    from batch_layer.errors import BadInputError
    from batch_layer.interactions import parse_time
    from batch_layer.job import EXIT_BAD_INPUT, EXIT_FAILED, JobLockedError, QualityGateError, run_batch
    from lambdarec.store import StoreError

    settings = load_settings(config, {"store": {"url": store} if store else None})
    try:
        cutoff = parse_time(as_of) if as_of else None
    except ValueError as exc:
        typer.echo(f"error: --as-of {as_of!r}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        result = run_batch(
            settings, interactions=interactions, as_of=cutoff, force=force, progress=progress, lake_version=lake_version
        )
    except BadInputError as exc:
        _fail(f"bad input: {exc}", EXIT_BAD_INPUT, as_json, {"published": False, "error": str(exc)})
    except QualityGateError as exc:
        for warning in exc.manifest.get("warnings") or []:
            typer.echo(f"warning: {warning['message']}", err=True)
        _fail(str(exc), exc.exit_code, as_json, {**exc.manifest, "error": str(exc)})
    except JobLockedError as exc:
        _fail(str(exc), exc.exit_code, as_json, {"published": False, "error": str(exc)})
    except StoreError as exc:
        _fail(f"store: {exc}", EXIT_FAILED, as_json, {"published": False, "error": str(exc)})
    if as_json:
        typer.echo(json.dumps(result.manifest, indent=2, sort_keys=True, default=str))
    else:
        for warning in result.manifest.get("warnings") or []:
            typer.echo(f"warning: {warning['message']}", err=True)
        typer.echo(result.message)
        m = result.manifest
        if m.get("published"):
            counts, gate = m["counts"], m.get("metrics", {})
            typer.echo(f"  users {counts['users']}, items {counts['items']}, interactions {counts['interactions']}")
            if "model" in gate:
                typer.echo(f"  holdout: model {gate['model']}  popularity {gate['popularity']}")
            if m.get("gate"):
                typer.echo(f"  {m['gate']['line']}")
            typer.echo("  stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in m["timings_s"].items()))


def _fail(message: str, code: int, as_json: bool, body: dict) -> None:
    typer.echo(f"error: {message}", err=True)
    if as_json:
        typer.echo(json.dumps(body, indent=2, sort_keys=True, default=str))
    raise typer.Exit(code)


@app.command("tune")
def tune(
    interactions: Annotated[
        str | None, typer.Option("--interactions", "-i", help="Parquet/CSV file, glob or folder (batch.interactions).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Cut-off, as for `batch run`; the validation window ends here."),
    ] = None,
    budget_s: Annotated[
        float | None, typer.Option("--budget-s", min=1, help="Wall-clock budget in seconds (batch.tune.budget_s).")
    ] = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="Most trials (batch.tune.trials).")] = None,
    apply: Annotated[
        Path | None,
        typer.Option("--apply", help="Write the best parameters into the [batch.train] table of this settings file."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the model family and its hyper-parameters on a validation window just before the cut-off."""
    from batch_layer.errors import BadInputError
    from batch_layer.interactions import parse_time, read_interactions
    from batch_layer.job import EXIT_BAD_INPUT
    from batch_layer.tune import tune as run_tune
    from batch_layer.tune import write_settings

    settings = load_settings(config)
    source = interactions or settings.batch.interactions
    try:
        if not source:
            raise BadInputError("no interaction log: pass --interactions PATH or set batch.interactions")
        cutoff = parse_time(as_of) if as_of else None
        frame, report = read_interactions(source, settings.batch, as_of=cutoff)
        result = run_tune(frame, settings.batch, budget_s=budget_s, trials=trials, progress=progress and not as_json)
    except BadInputError as exc:
        _fail(f"bad input: {exc}", EXIT_BAD_INPUT, as_json, {"error": str(exc)})
    at = cutoff or datetime.fromtimestamp(report.as_of_ms / 1000, UTC)
    doc = result.to_dict(at=at)
    if apply is not None:
        comment = (
            f"tuned by `lambdarec batch tune` on {source} up to {at.isoformat()}: {doc['metric']} {doc['value']:.4f} "
            f"on the validation window (current settings {doc['current_settings_value']:.4f})"
        )
        doc["applied_to"] = str(write_settings(result.best_params, apply, comment))
    if as_json:
        typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return
    v = doc["validation"]
    typer.echo(
        f"tuning on {v['fit_events']} events, validating on the newest {v['validation_events']} "
        f"({v['users']} warm users), models {', '.join(v['models'])}: {len(doc['trials'])} trials in "
        f"{doc['seconds']:.0f} s"
    )
    for t in doc["trials"]:
        value = "pruned" if t["value"] is None or t["state"] == "pruned" else f"{t['value']:.4f}"
        typer.echo(f"  #{t['number']:<3} {t['state']:<9} {doc['metric']} {value:<8} {t['params']}")
    typer.echo(f"best {doc['metric']} {doc['value']:.4f} (current settings {doc['current_settings_value']:.4f})")
    typer.echo(f"best parameters: {doc['params']}")
    if apply is not None:
        typer.echo(f"wrote them to [batch.train] in {doc['applied_to']}")
