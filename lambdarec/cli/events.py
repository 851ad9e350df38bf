"""``lambdarec events``: append events to the event log and inspect its dead letters.

Exit codes of ``send``: 0 every line appended; 1 the log failed part-way or could not be reached (the report
names the first line not known to be appended: rerun with ``--resume-from`` that line; lines before it are
appended, lines from it on may or may not be, and resending them is safe because each ``event_id`` counts once);
2 bad settings, an unreadable input, or at least one rejected line (every valid line is still appended: one bad
line never holds back the rest). 1 wins over 2.
"""

from __future__ import annotations

import base64
import json
import sys
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.settings import Settings, mask_url
from lambdarec.settings.eventlog import impressions_log

if TYPE_CHECKING:
    from lambdarec.eventlog import EventLog, SendInterruptedError, SendResult, SentRange

EXIT_UNAVAILABLE = 1
SHOWN_REJECTIONS = 20  # reasons printed in human output; --json has all that were kept

app = typer.Typer(
    help="Append events to the event log and inspect its dead letters.", no_args_is_help=True, add_completion=False
)

LogOption = Annotated[
    str | None,
    typer.Option(
        "--log", help="Event log URL, overriding log.url (sqlite:///dir or kafka://h:9092/topic).", show_default=False
    ),
]


@app.callback()
def _group() -> None:
    """Append events to the event log and inspect its dead letters."""


def _settings(config: Path | None, log_url: str | None) -> Settings:
    return load_settings(config, {"log": {"url": log_url}} if log_url else None)


@contextmanager
def _opened(settings: Settings) -> Iterator[EventLog]:
    from lambdarec.eventlog import EventLogError, open_log

    try:
        with open_log(settings) as log:
            yield log
    except EventLogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


class _Lines:
    """Non-blank lines of a stream from line ``start`` on, remembering each one's line number."""

    def __init__(self, stream: IO[bytes], start: int = 1):
        self.stream = stream
        self.start = start
        self.numbers: array[int] = array("q")  # 1-based line number of each yielded line
        self.last_line = start - 1  # the last line number read

    def __iter__(self) -> Iterator[bytes]:
        for number, line in enumerate(self.stream, start=1):
            self.last_line = number
            if number < self.start or not line.strip():
                continue
            self.numbers.append(number)
            yield line.rstrip(b"\r\n")

    def line_number(self, index: int) -> int:
        """1-based line number of the ``index``-th line sent."""
        return self.numbers[index]


@contextmanager
def _input(source: str) -> Iterator[IO[bytes]]:
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        fh = Path(source).open("rb")  # noqa: SIM115 - closed below, after the generator is drained
    except OSError as exc:
        typer.echo(f"error: cannot read {source}: {exc.strerror}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    with fh:
        yield fh


@app.command("send")
def send(
    source: Annotated[str, typer.Argument(help="JSON-lines file, one event per line; '-' reads stdin.")] = "-",
    resume_from: Annotated[
        int,
        typer.Option(
            "--resume-from",
            min=1,
            help="Skip the lines before this 1-based line number (what an interrupted send reported).",
        ),
    ] = 1,
    log_url: LogOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate JSON-lines events and append the valid ones, keyed by user_id.

    Every invalid line is reported with its line number and reason and is not appended; the valid ones are.
    Progress goes to stderr per batch of lines. When the log fails part-way the report gives, per line range,
    what was appended, what is unknown, and the first line not known to be appended, to pass to --resume-from.
    Exits 0 when all lines were appended, 1 when the log failed, 2 when any line was rejected.
    """
    from lambdarec.eventlog import EventLogError, SendInterruptedError, SendResult, open_ingest_log, send_events
    from lambdarec.events import EventRules

    settings = _settings(config, log_url)
    rules = EventRules.from_settings(settings)
    interrupted: SendInterruptedError | None = None
    unreachable: EventLogError | None = None
    with _input(source) as stream:
        lines = _Lines(stream, resume_from)
        result = SendResult()

        def progress(sent: SentRange) -> None:
            first, last = lines.line_number(sent.first), lines.line_number(sent.last)
            typer.echo(f"lines {first}-{last}: {_OUTCOME[sent.outcome]} ({sent.events} events)", err=True)

        try:
            with open_ingest_log(settings) as log:  # impressions to log.impressions_topic when set
                log.ensure_topic()
                result = send_events(log, lines, rules, on_batch=None if as_json else progress)
        except SendInterruptedError as exc:
            interrupted, result = exc, exc.result
        except EventLogError as exc:  # the log could not be reached: nothing was sent
            unreachable = exc
    report = _report(settings, lines, result, interrupted)
    if unreachable is not None:
        report |= {"complete": False, "error": str(unreachable), "first_unconfirmed_line": resume_from,
                   "ranges": [{"lines": [resume_from, None], "outcome": "not_sent", "events": None}]}  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report))
    else:
        _print_report(report, source)
    if interrupted is not None or unreachable is not None:
        raise typer.Exit(EXIT_UNAVAILABLE)
    if result.rejected:
        raise typer.Exit(EXIT_BAD_INPUT)


_OUTCOME = {
    "appended": "appended",
    "unknown": "outcome unknown (the log did not confirm; resending is safe)",
    "not_sent": "not appended",
}


def _report(
    settings: Settings, lines: _Lines, result: SendResult, interrupted: SendInterruptedError | None
) -> dict[str, Any]:
    ranges = [
        {
            "lines": [lines.line_number(r.first), lines.line_number(r.last)],
            "outcome": r.outcome,
            "events": r.events,
            "confirmed": r.confirmed,
        }
        for r in result.ranges
    ]
    first = result.first_unconfirmed
    report: dict[str, Any] = {
        "log": mask_url(settings.log.url),
        "accepted": result.accepted,
        "rejected": result.rejected,
        "unknown": result.unknown,
        "rejections": [{"line": lines.line_number(r.index), "reason": r.reason} for r in result.rejections],
        "ranges": ranges,
        "complete": interrupted is None,
        "first_unconfirmed_line": lines.line_number(first) if first is not None else None,
    }
    if interrupted is not None:
        report["error"] = str(interrupted.cause)
        if ranges:  # the rest of the input (if any) was not read
            ranges.append({"lines": [ranges[-1]["lines"][1] + 1, None], "outcome": "not_sent", "events": None})
    return report


def _print_report(report: dict[str, Any], source: str) -> None:
    unknown = f", unknown {report['unknown']}" if report["unknown"] else ""
    typer.echo(f"appended {report['accepted']}, rejected {report['rejected']}{unknown} ({report['log']})")
    for r in report["rejections"][:SHOWN_REJECTIONS]:
        typer.echo(f"line {r['line']}: {r['reason']}", err=True)
    if report["rejected"] > SHOWN_REJECTIONS:
        typer.echo(f"... and {report['rejected'] - SHOWN_REJECTIONS} more rejected lines", err=True)
    if report["complete"]:
        return
    typer.echo(f"error: the event log failed: {report['error']}", err=True)
    for r in report["ranges"]:
        first, last = r["lines"]
        where = f"lines {first}-{last}" if last is not None else f"lines {first}-end (the rest, if any)"
        typer.echo(f"  {where}: {_OUTCOME[r['outcome']]}", err=True)
    line = report["first_unconfirmed_line"]
    typer.echo(
        f"every line before {line} is appended (or rejected above); from line {line} on, resend with: "
        f"lambdarec events send {source} --resume-from {line}  (each event_id counts once, so a resent line that "
        "was appended already changes nothing)",
        err=True,
    )


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N dead letters.")] = 20,
    log_url: LogOption = None,
    impressions: Annotated[
        bool, typer.Option("--impressions", help="The impressions log's dead letters (log.impressions_topic).")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest dead letters (oldest first): when, where from, why, and the original bytes."""
    settings = _settings(config, log_url)
    cfg = impressions_log(settings.log) if impressions else settings.log
    if cfg is None:
        typer.echo("error: --impressions needs log.impressions_topic (unset: impressions share log.url's)", err=True)
        raise typer.Exit(2)
    with _opened(settings.model_copy(update={"log": cfg})) as log:
        found = log.read_dead_letters(limit)
    rows = [
        {
            "time": datetime.fromtimestamp(d.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            "source": list(d.source) if d.source else None,
            "reason": d.reason,
            "value": d.value.decode("utf-8", errors="replace"),
            "value_b64": base64.b64encode(d.value).decode(),
        }
        for d in found
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no dead letters ({mask_url(cfg.url)}, {cfg.dead_letter})")
    for r in rows:
        where = f"partition {r['source'][0]} offset {r['source'][1]}" if r["source"] else "no source"
        preview = r["value"] if len(r["value"]) <= 200 else r["value"][:200] + "..."
        typer.echo(f"{r['time']}  {where}  {r['reason']}\n    {preview}")
