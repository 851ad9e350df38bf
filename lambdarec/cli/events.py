"""``lambdarec events``: append events to the event log and inspect its dead letters.

Exit codes: 0 all good; 1 the log could not be reached; 2 bad settings, an unreadable input, or at least one
rejected line (``send`` still appends every valid line: one bad line never holds back the rest).
"""

from __future__ import annotations

import base64
import bisect
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.settings import Settings, mask_url

if TYPE_CHECKING:
    from lambdarec.log import EventLog

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
    from lambdarec.log import EventLogError, open_log

    try:
        with open_log(settings) as log:
            yield log
    except EventLogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


class _Lines:
    """Non-blank lines of a stream, remembering where blank lines were so indices map back to line numbers."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.gaps: list[int] = []  # for each blank line: how many non-blank lines came before it

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for line in self.stream:
            if line.strip():
                seen += 1
                yield line.rstrip(b"\r\n")
            else:
                self.gaps.append(seen)

    def line_number(self, index: int) -> int:
        """1-based line number of the ``index``-th non-blank line."""
        return index + 1 + bisect.bisect_right(self.gaps, index)


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
    log_url: LogOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate JSON-lines events and append the valid ones, keyed by user_id.

    Every invalid line is reported with its line number and reason and is not appended; the valid ones are.
    Exits 2 when any line was rejected.
    """
    from lambdarec.events import EventRules
    from lambdarec.log import send_events

    settings = _settings(config, log_url)
    rules = EventRules.from_settings(settings)
    with _input(source) as stream, _opened(settings) as log:
        log.ensure_topic()
        lines = _Lines(stream)
        result = send_events(log, lines, rules)
    rejections = [{"line": lines.line_number(r.index), "reason": r.reason} for r in result.rejections]
    if as_json:
        out = {"log": mask_url(settings.log.url), "accepted": result.accepted, "rejected": result.rejected}
        typer.echo(json.dumps({**out, "rejections": rejections}))
    else:
        typer.echo(f"appended {result.accepted}, rejected {result.rejected} ({mask_url(settings.log.url)})")
        for r in rejections[:SHOWN_REJECTIONS]:
            typer.echo(f"line {r['line']}: {r['reason']}", err=True)
        if result.rejected > SHOWN_REJECTIONS:
            typer.echo(f"... and {result.rejected - SHOWN_REJECTIONS} more rejected lines", err=True)
    if result.rejected:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N dead letters.")] = 20,
    log_url: LogOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest dead letters (oldest first): when, where from, why, and the original bytes."""
    settings = _settings(config, log_url)
    with _opened(settings) as log:
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
        typer.echo(f"no dead letters ({mask_url(settings.log.url)}, {settings.log.dead_letter})")
    for r in rows:
        where = f"partition {r['source'][0]} offset {r['source'][1]}" if r["source"] else "no source"
        preview = r["value"] if len(r["value"]) <= 200 else r["value"][:200] + "..."
        typer.echo(f"{r['time']}  {where}  {r['reason']}\n    {preview}")
