"""``lambdarec demo``: the whole system on embedded defaults, in one command, on a fresh machine with no servers.

It synthesises a clickstream with a taste drift (or reads ``--interactions``), runs the nightly batch job into an
embedded SQLite store, starts the speed layer and the HTTP server as child processes, shows one user's list
before and after a burst of fresh events posted over HTTP, runs a sampled replay with its HTML report, and says
where everything is. See :mod:`demo.steps` for the steps and :mod:`demo.workspace` for the folder.

Reruns reuse ``--dir``: the same log, so the batch job has nothing to do; the event log and fresh state carry
over, and the demo picks a user the speed layer holds nothing for yet. ``--fresh`` starts from an empty folder.
Nothing is left running unless ``--keep-serving``; Ctrl-C or SIGTERM stops every process the demo started.

Exit codes: 0 done; 1 a step failed (a server did not start, the fresh events did not show); 2 bad input;
130 interrupted by SIGINT, 143 by SIGTERM.

Example
-------
``lambdarec demo --users 1500 --items 600 --events 60000 --dir var/demo-small --json``
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, JsonOption

EXIT_FAILED = 1

app = typer.Typer(
    help="The whole system end to end on embedded defaults (SQLite store and event log, no servers to install): "
    "synthesise a clickstream with a taste drift (or read --interactions), run the nightly batch job, start the "
    "speed layer and the HTTP server, show one user's list change after fresh events, replay the log into an HTML "
    "report, and say where everything is.\n\nEverything goes under --dir; a rerun reuses it (--fresh wipes it). "
    "Nothing is left running unless --keep-serving; Ctrl-C stops everything the demo started. Progress goes to "
    "stdout, or to stderr with --json, which prints a JSON summary. Exit codes: 0 done, 1 a step failed, 2 bad "
    "input, 130/143 interrupted.",
    invoke_without_command=True,
    add_completion=False,
)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (like KeyboardInterrupt, past ``except Exception``) and clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


@app.callback()
def demo(
    interactions: Annotated[
        str | None,
        typer.Option(
            "--interactions", "-i", help="Run on this log (parquet/CSV file, glob or folder), not a synthetic one."
        ),
    ] = None,
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the store, the event log, config and report.")
    ] = Path("var/demo"),
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to serve on (default: a free one).")
    ] = None,
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="Leave the speed layer and the server running afterwards.")
    ] = False,
    users: Annotated[int, typer.Option("--users", min=2, help="Synthetic log: users.")] = 10_000,
    items: Annotated[int, typer.Option("--items", min=20, help="Synthetic log: items.")] = 3_000,
    events: Annotated[int, typer.Option("--events", min=1000, help="Synthetic log: events.")] = 500_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the synthetic log, the user picked and the replay.")
    ] = 42,
    sample: Annotated[int, typer.Option("--sample", min=1, help="Replay: events scored.")] = 2_000,
    fresh: Annotated[bool, typer.Option("--fresh", help="Wipe --dir first (only a folder the demo wrote).")] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="Only stop the servers an earlier --keep-serving run left in --dir.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the whole system end to end on a synthetic clickstream (or --interactions) and show what each layer does.

    Writes everything under --dir (default var/demo): settings, the embedded store and event log, the servers'
    output, the replay report. Progress goes to stdout, or to stderr with --json, which prints a JSON summary.
    """
    from demo.console import make_console
    from demo.steps import DemoOptions, DemoRun
    from lambdarec.logs import configure_logging

    configure_logging(level=os.environ.get("LAMBDAREC_LOG_LEVEL", "WARNING"))
    console = make_console(stderr=as_json)
    if stop:
        _stop_only(directory, console, as_json)
        return
    opts = DemoOptions(directory, interactions, port, keep_serving, users, items, events, seed, sample, fresh)
    run = DemoRun(opts, console)
    code = _run(run, console)
    if as_json:
        typer.echo(json.dumps(run.summary, indent=2, default=str))
    if code:
        raise typer.Exit(code)


def _run(run: Any, console: Any) -> int:
    """Run the demo with SIGINT and SIGTERM turned into a clean unwind; the exit code."""
    from batch_layer.errors import BadInputError
    from batch_layer.job import JobLockedError
    from demo.live import LiveError
    from demo.steps import ServiceError, WorkspaceError
    from lambdarec.settings import ConfigError

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _interrupt) for s in signals}
    code = 0
    try:
        run.run()
        code = EXIT_FAILED if run.summary["status"] == "failed" else 0
    except Interrupted as exc:
        run.summary["status"] = "interrupted"
        run.summary["signal"] = str(exc)
        console.print(f"\ninterrupted by {exc}: stopping what the demo started", markup=False, soft_wrap=True)
        code = 128 + exc.signum
    except (WorkspaceError, BadInputError, ConfigError) as exc:
        code = _failed(run, console, exc, EXIT_BAD_INPUT)
    except (ServiceError, LiveError, JobLockedError) as exc:
        code = _failed(run, console, exc, EXIT_FAILED)
    except typer.Exit as exc:  # a command helper has already said why
        run.summary["status"] = "failed"
        code = exc.exit_code
    except Exception as exc:  # a bug: the traceback for the report, the JSON summary for the script
        console.print_exception()
        code = _failed(run, console, exc, EXIT_FAILED)
    finally:
        for s in signals:  # the cleanup itself must not be cut short; it is bounded by its own timeouts
            signal.signal(s, signal.SIG_IGN)
        try:
            run.cleanup()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    return code


def _failed(run: Any, console: Any, exc: BaseException, code: int) -> int:
    run.summary["status"] = "failed"
    run.summary["error"] = str(exc)
    console.print(f"error: {exc}", markup=False, soft_wrap=True)
    return code


def _stop_only(directory: Path, console: Any, as_json: bool) -> None:
    from demo.services import stop_recorded
    from demo.workspace import Workspace

    stopped = stop_recorded(Workspace(directory))
    console.print(f"stopped pids {stopped}" if stopped else f"no demo server is running from {directory}", markup=False)
    if as_json:
        typer.echo(json.dumps({"stopped": stopped}))
