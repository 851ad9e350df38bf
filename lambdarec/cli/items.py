"""``lambdarec items``: upsert the item catalog from a file, and show one item.

Exit codes of ``import``: 0 every item upserted; 1 the event log or the store failed (the report names the first
line not known to be written: rerun from there with ``--resume-from``; an upsert is idempotent, so resending more
is safe); 2 bad settings, an unreadable file, or at least one refused item (every valid one is still upserted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption
from lambdarec.cli.store import EXIT_STORE_FAILED, StoreOption, configure_cli_logging, open_cli_store, store_errors

BATCH = 1000  # items per log append and store write
SHOWN_REJECTIONS = 20

app = typer.Typer(
    help="Upsert the item catalog from a file; show one item.", no_args_is_help=True, add_completion=False
)


@app.callback()
def _group() -> None:
    """Upsert the item catalog from a file; show one item."""
    configure_cli_logging()


@app.command("import")
def import_items(
    path: Annotated[
        Path, typer.Argument(help="JSON lines, CSV or parquet of item objects.", exists=True, dir_okay=False)
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, csv or parquet (default: from the file's suffix).")
    ] = None,
    resume_from: Annotated[int, typer.Option("--resume-from", min=1, help="First line (or row) to send.")] = 1,
    as_json: JsonOption = False,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Upsert every item of PATH (each is also an `item` event in the log); fields a row leaves out keep their
    stored values. Refused items are reported with their line and reason; the others are upserted."""
    from lambdarec.catalog.files import BadLine, format_of, read_items
    from lambdarec.catalog.ingest import ItemLimits, UpsertReport
    from lambdarec.eventlog import EventLogError, open_log
    from lambdarec.store import StoreError

    if fmt is not None and fmt not in ("jsonl", "csv", "parquet"):
        typer.echo(f"error: --format must be jsonl, csv or parquet; got {fmt!r}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    settings, opened = open_cli_store(config, store)
    limits, report, first_unsent, pending = ItemLimits.from_settings(settings), UpsertReport(), None, []
    try:
        rows = read_items(path, format_of(path, fmt))  # streamed: a batch of BATCH items in memory at a time
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    with opened, open_log(settings) as log:
        try:
            log.ensure_topic()
            for number, obj in rows:
                if number < resume_from:
                    continue
                if isinstance(obj, BadLine):
                    report.refuse(number, str(obj))
                    continue
                pending.append((number, obj))
                if len(pending) >= BATCH:
                    first_unsent = pending[0][0]
                    _send(opened, log, pending, limits, report)
                    pending, first_unsent = [], None
            if pending:
                first_unsent = pending[0][0]
                _send(opened, log, pending, limits, report)
        except (EventLogError, StoreError) as exc:
            _finish(report, as_json, first_unsent, str(exc))
            raise typer.Exit(EXIT_STORE_FAILED) from None
        except (OSError, pl_errors()) as exc:
            _finish(report, as_json, pending[0][0] if pending else None, f"cannot read {path}: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    _finish(report, as_json, None, None)
    if report.rejected:
        raise typer.Exit(EXIT_BAD_INPUT)


def pl_errors() -> type[Exception]:
    """polars' error base (a CSV or parquet file it cannot read)."""
    import polars as pl  # only for CSV and parquet files

    return pl.exceptions.PolarsError


def _send(store, log, pending, limits, report) -> None:  # type: ignore[no-untyped-def]
    """Upsert one batch; rejections are numbered by line (``upsert_items`` numbers by position)."""
    from lambdarec.catalog.ingest import UpsertReport, upsert_items

    from_batch = upsert_items(store, log, [obj for _, obj in pending], limits, report=UpsertReport())
    report.accepted += from_batch.accepted
    for index, reason in from_batch.rejections:
        report.refuse(pending[index][0], reason)


def _finish(report, as_json: bool, first_unsent: int | None, failure: str | None) -> None:  # type: ignore[no-untyped-def]
    body = {"accepted": report.accepted, "rejected": report.rejected,
            "rejections": [{"line": n, "reason": r} for n, r in report.rejections]}  # fmt: skip
    if failure is not None:
        body |= {"failed": failure, "resume_from": first_unsent}
    if as_json:
        typer.echo(json.dumps(body))
        return
    typer.echo(f"{report.accepted} items upserted, {report.rejected} refused")
    for number, reason in report.rejections[:SHOWN_REJECTIONS]:
        typer.echo(f"  line {number}: {reason}", err=True)
    if failure is not None:
        typer.echo(f"error: {failure}; rerun with --resume-from {first_unsent}", err=True)


@app.command("show")
def show(
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the item as the catalog holds it (JSON, as GET /v1/items/ITEM_ID); exit 2 when it is not listed."""
    _, opened = open_cli_store(config, store)
    with opened, store_errors():
        found = opened.read_catalog([item_id])
    if item_id not in found:
        typer.echo(f"error: item {item_id!r} is not in the catalog", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(json.dumps(found[item_id].to_json()))
