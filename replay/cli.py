"""``lambdarec replay``: offline replay evaluation from a shell; ``lambdarec replay tune`` searches re-rank weights.

``lambdarec replay --interactions PATH --split-at TS`` runs the replay (the group's default command);
``lambdarec replay tune ...`` runs the weight search. Exit codes: 0 done, 1 other failure, 2 bad input.

Example
-------
``lambdarec replay -i var/log.parquet --split-at 80% --sample 5000 --report var/replay``
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings

EXIT_FAILED = 1

app = typer.Typer(
    help="Offline replay evaluation: train on the past, replay the future through the serving code.",
    invoke_without_command=True,
    no_args_is_help=True,
    add_completion=False,
)

Interactions = Annotated[
    str | None,
    typer.Option(
        "--interactions",
        "-i",
        help="Interaction log: parquet/CSV file, glob or folder; `lake` (its latest version) or `lake@V`.",
    ),
]
SplitAt = Annotated[
    str | None,
    typer.Option(
        "--split-at", help="Train on events at or before this time: ISO-8601, epoch s/ms, or a share like 80%."
    ),
]
Until = Annotated[str | None, typer.Option("--until", help="Replay events up to this time (default: the last).")]
Sample = Annotated[
    int | None, typer.Option("--sample", min=1, help="Score a seeded sample of N events (default: every novel one).")
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the event sample, the bootstrap and the weight search.")]
SessionGap = Annotated[
    float, typer.Option("--session-gap", min=1, help="Seconds of silence that end a session (when no session_id).")
]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")]


@app.callback()
def replay(
    ctx: typer.Context,
    interactions: Interactions = None,
    split_at: SplitAt = None,
    until: Until = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated; the first one leads the plots.")] = "10,20",
    variants: Annotated[
        str, typer.Option("--variants", help="Comma-separated: popular, batch, batch+speed, lambda; or all.")
    ] = "all",
    sample: Sample = None,
    seed: Seed = 0,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write report.html and report.json into this folder.")
    ] = None,
    rebatch_every: Annotated[
        str | None, typer.Option("--rebatch-every", help="Re-run the batch job every period (1d, 12h, 3600).")
    ] = None,
    session_gap: SessionGap = 1800.0,
    trending: Annotated[bool, typer.Option("--trending/--no-trending", help="lambda: use trending counts.")] = True,
    fold_in: Annotated[
        bool, typer.Option("--fold-in/--no-fold-in", help="batch+speed and lambda: use the fold-in vector.")
    ] = True,
    session: Annotated[bool, typer.Option("--session/--no-session", help="lambda: re-rank with the session.")] = True,
    weight_cf: Annotated[float | None, typer.Option("--weight-cf", min=0, help="Override serving.weight_cf.")] = None,
    weight_session: Annotated[
        float | None, typer.Option("--weight-session", min=0, help="Override serving.weight_session.")
    ] = None,
    weight_trending: Annotated[
        float | None, typer.Option("--weight-trending", min=0, help="Override serving.weight_trending.")
    ] = None,
    session_half_life: Annotated[
        float | None, typer.Option("--session-half-life", min=1, help="Override serving.session_half_life_s.")
    ] = None,
    mmr_lambda: Annotated[
        float | None, typer.Option("--mmr-lambda", min=0, max=1, help="Override serving.mmr_lambda.")
    ] = None,
    fresh_boost: Annotated[
        float | None, typer.Option("--fresh-boost", min=0, help="Override serving.fresh_boost.")
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap draws over users.")] = 1000,
    progress: Progress = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    experiment: Annotated[str | None, typer.Option("--experiment", help="The arms of [experiments.NAME].")] = None,
) -> None:
    """Replay the log after --split-at through the serving code and score every variant on the same events.

    Settings come from --config: the batch section trains the snapshot, speed and serving shape the state
    and the weights. The batch job writes into a temporary embedded store; nothing else is touched.
    """
    if ctx.invoked_subcommand is not None:
        return
    from replay.experiment import experiment_variants
    from replay.protocol import ReplayConfig, parse_period, run_replay
    from replay.variants import parse_kinds, standard_variants

    overrides = {
        "weight_cf": weight_cf,
        "weight_session": weight_session,
        "weight_trending": weight_trending,
        "session_half_life_s": session_half_life,
        "mmr_lambda": mmr_lambda,
        "fresh_boost": fresh_boost,
    }
    settings = load_settings(config, {"serving": {key: v for key, v in overrides.items() if v is not None}})
    source = _lake_or_path(_required(interactions, "--interactions"), settings)
    with _bad_input():
        split = _time(_required(split_at, "--split-at"), "--split-at", source, settings)
        cfg = ReplayConfig(
            source,
            split_at=split,
            until=_time(until, "--until", source, settings) if until else None,
            ks=_ks(k),
            sample=sample,
            seed=seed,
            rebatch_every_s=parse_period(rebatch_every) if rebatch_every else None,
            session_gap_s=session_gap,
            bootstrap_draws=bootstrap,
            progress=progress,
        )
        chosen = standard_variants(
            _weights(settings), parse_kinds(variants), fold_in=fold_in, session=session, trending=trending
        )
        if experiment is not None:  # the experiment's arms instead of --variants
            chosen = experiment_variants(settings, experiment)
    with _bad_input(args=False):
        run = run_replay(settings, cfg, chosen)
    from replay.report import build_report, format_table, write_report

    doc = build_report(run)
    if report is not None:
        html_path, json_path = write_report(doc, report)
        doc["report"] = {"html": str(html_path), "json": str(json_path)}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(format_table(doc))
        if report is not None:
            typer.echo(f"report: {doc['report']['html']} and {doc['report']['json']}")


@app.command("tune")
def tune(
    interactions: Interactions = None,
    split_at: SplitAt = None,
    validation_until: Annotated[
        str | None, typer.Option("--validation-until", help="End of the validation window; the test window follows.")
    ] = None,
    until: Until = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Weight sets tried (the first: the current).")] = 30,
    seed: Seed = 0,
    sample: Sample = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of the ndcg@K the search maximises.")] = 10,
    out: Annotated[
        Path, typer.Option("--out", help="Settings file to write the best weights to ([serving] section).")
    ] = Path("settings.toml"),
    session_gap: SessionGap = 1800.0,
    progress: Progress = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the re-rank weights on a validation window, write the best to --out, report the test window."""
    from replay.tune import TuneConfig, run_tune, write_settings_toml

    settings = load_settings(config)
    source = _lake_or_path(_required(interactions, "--interactions"), settings)
    with _bad_input():
        cfg = TuneConfig(
            source,
            split_at=_time(_required(split_at, "--split-at"), "--split-at", source, settings),
            validation_until=_time(
                _required(validation_until, "--validation-until"), "--validation-until", source, settings
            ),
            until=_time(until, "--until", source, settings) if until else None,
            trials=trials,
            seed=seed,
            sample=sample,
            k=k,
            session_gap_s=session_gap,
            progress=progress,
        )
    with _bad_input(args=False):
        doc = run_tune(settings, cfg)
    val, test, key = doc["validation"], doc["test"], doc["metric"]
    comment = (
        f"Re-rank weights from `lambdarec replay tune` on {source}: validation window {val['window'][0]} to "
        f"{val['window'][1]}, best of {len(val['trials'])} trials by {key}.\n"
        f"Test window {key}: tuned {test['variants']['lambda-tuned'][key]:.4f}, "
        f"current {test['variants']['lambda'][key]:.4f}, batch {test['variants']['batch'][key]:.4f}."
    )
    doc["out"] = str(write_settings_toml(doc["best_weights"], out, comment))
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    best = val["trials"][doc["best_trial"]]
    typer.echo(f"validation: {val['events_scored']} events, {len(val['trials'])} trials")
    typer.echo(f"  current weights {key} {val['trials'][0][key]:.4f}; best (trial {doc['best_trial']}) {best[key]:.4f}")
    typer.echo(f"  best weights: {doc['best_weights']}")
    typer.echo(f"test: {test['events_scored']} events")
    for name, m in test["variants"].items():
        lo, hi = m["ci"][key]
        typer.echo(f"  {name:<14} {key} {m[key]:.4f} [{lo:.4f}, {hi:.4f}]")
    typer.echo(f"wrote {doc['out']}")


class _bad_input:
    """Turn bad input (a wrong flag value, an unreadable log) into exit code 2 with the reason.

    ``args=False`` while the replay runs: then only the batch layer's ``BadInputError`` counts as bad input,
    and any other error surfaces as the failure it is.
    """

    def __init__(self, args: bool = True) -> None:
        self.args = args

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        from batch_layer.errors import BadInputError

        if exc is not None and isinstance(exc, ValueError if self.args else BadInputError):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        return False


def _required(value: str | None, flag: str) -> str:
    if value is None or not value.strip():
        typer.echo(f"error: {flag} is required", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    return value


def _lake_or_path(source: str, settings: Any) -> str:
    """``lake`` or ``lake@V``: that lake version exported once to a temporary parquet file; else ``source``."""
    if source != "lake" and not source.startswith("lake@"):
        return source
    from batch_layer.errors import BadInputError
    from batch_layer.lake_source import export_lake
    from lambdarec.lake import LakeError, open_lake

    try:
        version = int(source.split("@", 1)[1]) if "@" in source else None
        folder = tempfile.mkdtemp(prefix="lambdarec-replay-lake-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path, pinned = export_lake(open_lake(settings), f"{folder}/lake.parquet", version)
    except (BadInputError, LakeError, ValueError) as exc:
        typer.echo(f"error: --interactions {source}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"replaying the lake at version {pinned}", err=True)
    return path


def _time(text: str, flag: str, source: str, settings: Any) -> datetime:
    """``80%`` -> the time at that share of the log's events; else ISO-8601 or epoch seconds/milliseconds."""
    from batch_layer.interactions import parse_time
    from replay.protocol import quantile_time

    try:
        if text.strip().endswith("%"):
            return quantile_time(source, settings, float(text.strip()[:-1]) / 100)
        return parse_time(text)
    except ValueError as exc:
        raise ValueError(f"{flag} {text!r}: {exc}") from None


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--k {text!r} must be comma-separated whole numbers, e.g. 10,20") from None
    if not ks or min(ks) < 1:
        raise ValueError(f"--k {text!r} must list cut-offs >= 1, e.g. 10,20")
    return tuple(dict.fromkeys(ks))


def _weights(settings: Any) -> Any:
    from lambdarec.rank.merge import MergeWeights

    return MergeWeights.from_settings(settings.serving)
