"""``lambdarec datasets``: import public rating files, fetch MovieLens-100K, synthesise a log, check a log.

Bad input (a missing file, a malformed line, a missing column) exits with code 2 and says what is wrong.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from batch_layer.errors import BadInputError, DatasetFetchError
from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.logs import configure_logging

app = typer.Typer(
    help="Import, fetch, synthesise and check interaction logs.", no_args_is_help=True, add_completion=False
)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Where to write the log (.parquet, or .csv).")]


@app.callback()
def _group() -> None:
    """Import, fetch, synthesise and check interaction logs."""
    configure_logging()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _emit(data: dict[str, object], as_json: bool, line: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else line)


@app.command("import")
def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="ml-100k, ml-1m, ml-latest, recbole, or auto.")],
    path: Annotated[Path, typer.Argument(help="The dataset file (u.data, ratings.dat, ratings.csv, *.inter).")],
    out: OutOption,
    as_json: JsonOption = False,
) -> None:
    """Convert a public rating file into a canonical interaction log."""
    from batch_layer.datasets import import_dataset, write_log

    started = time.perf_counter()
    try:
        frame = import_dataset(fmt, path)
    except BadInputError as exc:
        raise _fail(str(exc)) from None
    write_log(frame, out)
    data = {
        "out": str(out),
        "rows": frame.height,
        "users": frame["user_id"].n_unique(),
        "items": frame["item_id"].n_unique(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    _emit(data, as_json, f"wrote {data['rows']:,} ratings ({data['users']:,} users, {data['items']:,} items) to {out}")


@app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="The dataset; only ml-100k is fetched.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also import it into this log file.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache folder (default: $LAMBDAREC_CACHE or ~/.cache/lambdarec).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Download MovieLens-100K (from the recbole wheel, via pip) into the cache; optionally import it."""
    from batch_layer.datasets import fetch_movielens_100k, import_dataset, write_log

    if name != "ml-100k":
        raise _fail(f"cannot fetch dataset {name!r}; only ml-100k can be fetched")
    try:
        path = fetch_movielens_100k(cache_dir)
    except DatasetFetchError as exc:
        raise _fail(str(exc), code=1) from None
    data: dict[str, object] = {"cached": str(path)}
    if out is not None:
        frame = import_dataset("recbole", path)
        write_log(frame, out)
        data |= {"out": str(out), "rows": frame.height}
    _emit(data, as_json, f"ml-100k cached at {path}" + (f"; wrote {data['rows']:,} ratings to {out}" if out else ""))


@app.command("synth")
def synth(
    *,
    users: Annotated[int, typer.Option(min=1, help="Users.")],
    items: Annotated[int, typer.Option(min=1, help="Items.")],
    events: Annotated[int, typer.Option(min=1, help="Events.")],
    out: OutOption,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: batch.seed).")] = None,
    days: Annotated[float, typer.Option(min=0.001, help="Sessions start within this many days.")] = 30.0,
    start: Annotated[str, typer.Option(help="First day: ISO-8601 or epoch seconds/ms.")] = "2024-01-01T00:00:00Z",
    drift_at: Annotated[str | None, typer.Option(help="Users change tastes from this time on.")] = None,
    drift_after_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Drift after this share of the days.")
    ] = None,
    clusters: Annotated[int | None, typer.Option(min=1, help="Taste clusters (default ~sqrt(items)/2).")] = None,
    impressions: Annotated[
        int, typer.Option(min=0, help="Impression events per positive event (parquet only: item_ids is a list).")
    ] = 0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a seeded clickstream: power-law popularity, taste clusters, sessions, optional drift.

    Writes the log to --out and a summary (counts, time range, mix) to OUT with suffix .summary.json.
    """
    from batch_layer.datasets import write_log
    from batch_layer.interactions import parse_time
    from batch_layer.synth import SynthSpec, synthesize

    if drift_at is not None and drift_after_fraction is not None:
        raise _fail("give --drift-at or --drift-after-fraction, not both")
    try:
        first = parse_time(start)
        drift = parse_time(drift_at) if drift_at is not None else None
        if drift_after_fraction is not None:
            drift = first + timedelta(days=days * drift_after_fraction)
        spec = SynthSpec(
            users=users,
            items=items,
            events=events,
            seed=seed if seed is not None else load_settings(config).batch.seed,
            days=days,
            start=first,
            drift_at=drift,
            clusters=clusters,
            impressions=impressions,
        )
    except (BadInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    started = time.perf_counter()
    log = synthesize(spec, progress=sys.stderr.isatty())
    write_log(log.events, out)
    summary = {"out": str(out), **log.summary(), "seconds": round(time.perf_counter() - started, 3)}
    sidecar = out.with_suffix(".summary.json")
    sidecar.write_text(json.dumps(summary, indent=2) + "\n")
    line = (
        f"wrote {summary['events']:,} events ({summary['users']:,} users, {summary['items']:,} items, "
        f"{summary['first']} .. {summary['last']}) to {out} in {summary['seconds']} s; summary in {sidecar}"
    )
    _emit(summary, as_json, line)


@app.command("check")
def check(
    path: Annotated[str | None, typer.Argument(help="Log file, glob or folder (default: batch.interactions).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Data cut-off: ISO-8601 or epoch s/ms (default: now).")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read an interaction log with the batch settings and report what would be kept and dropped, and why."""
    from batch_layer.interactions import parse_time, read_interactions

    settings = load_settings(config)
    try:
        _, report = read_interactions(path, settings.batch, as_of=parse_time(as_of) if as_of else None)
    except BadInputError as exc:
        raise _fail(str(exc)) from None
    data = report.to_dict()
    bad = ", ".join(f"{k}={v}" for k, v in report.bad_rows.items()) or "none"
    _emit(
        data,
        as_json,
        f"{report.source}: {report.rows_read:,} rows read from {report.files} file(s), {report.rows_kept:,} kept; "
        f"bad rows: {bad}; duplicates: {report.duplicates_dropped:,}; outside window: {report.outside_window:,} "
        f"({report.after_as_of:,} after as-of); fingerprint {report.fingerprint[:16]}",
    )
