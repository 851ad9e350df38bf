"""What the demo shows a person: numbered steps, tables and the next things to try (rich, which typer brings).

With ``--json`` all of it goes to stderr and stdout carries only the final JSON document.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

STEPS = 8  # the demo's numbered steps (demo/steps.py)
_PLAIN_WIDTH = 120  # rich's width when not on a terminal (a file, a pipe, a test)


def make_console(*, stderr: bool) -> Console:
    """A console on stdout, or stderr under ``--json``; no markup surprises from item ids or paths."""
    console = Console(stderr=stderr, highlight=False, emoji=False)
    if not console.is_terminal:
        console.width = _PLAIN_WIDTH
    return console


def shown(path: Path | str) -> str:
    """A path relative to the working directory when it lies beneath it, else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def step(console: Console, n: int, title: str) -> None:
    """A numbered step's heading, ``[n/8] title``."""
    console.print()
    console.print(f"[bold]\\[{n}/{STEPS}] {title}[/bold]")


def note(console: Console, text: str) -> None:
    """An indented line, printed as it is (no markup)."""
    console.print("    " + text, markup=False, soft_wrap=True)


def log_summary(console: Console, summary: dict[str, Any], source: str, reused: bool) -> None:
    """Step 1: what the log holds, and the planted drift."""
    verb = "reused" if reused else ("generated" if summary.get("synthetic") else "read")
    note(
        console,
        f"{verb} {shown(source)}: {summary['events']:,} events, {summary['users']:,} users, "
        f"{summary['items']:,} items, {summary['first'][:19]} .. {summary['last'][:19]} UTC",
    )
    if summary.get("drift_at"):
        note(console, f"taste drift planted at {summary['drift_at'][:19]} UTC: users switch taste clusters")


def batch_summary(console: Console, manifest: dict[str, Any], message: str) -> None:
    """Step 2: the job's verdict, the snapshot's counts, the holdout table (model vs popularity), stage times."""
    counts, gate = manifest.get("counts", {}), manifest.get("metrics", {})
    note(console, message)
    note(
        console,
        f"snapshot {manifest.get('version')}: {counts.get('users', 0):,} users, {counts.get('items', 0):,} items, "
        f"{counts.get('interactions', 0):,} interactions; model {manifest.get('model', {}).get('kind')}, "
        f"{manifest.get('model', {}).get('factors')} factors",
    )
    if "model" in gate:
        table = Table(title=f"holdout (newest {gate['holdout_events']:,} events)", title_justify="left")
        table.add_column("")
        for key in gate["model"]:
            table.add_column(key, justify="right")
        for who in ("model", "popularity"):
            table.add_row(who, *(f"{v:.4f}" for v in gate[who].values()))
        console.print(table)
    elif gate.get("skipped"):
        note(console, f"holdout: skipped ({gate['skipped']})")
    if manifest.get("timings_s"):
        note(console, "stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in manifest["timings_s"].items()))


def rec_table(
    console: Console,
    body: dict[str, Any],
    title: str,
    *,
    entered: set[str] | None = None,
    taste: Callable[[str], str] | None = None,
) -> None:
    """A user's list: rank, item, score, source, reason; ``entered`` marks items new to the list, ``taste`` adds
    a column naming each item's taste cluster (a synthetic log's truth)."""
    age = body.get("fresh_state_age_s")
    fresh = "none" if age is None else f"{age:.1f} s old"
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.caption = f"snapshot {body['snapshot']}; fresh state {fresh}"
    for name, justify in (("#", "right"), ("item", "left"), ("score", "right"), ("source", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    if taste is not None:
        table.add_column("taste")
    table.add_column("reason")
    for rank, item in enumerate(body["items"], start=1):
        new = entered is not None and item["item_id"] in entered
        cells = [str(rank), item["item_id"] + (" *" if new else ""), f"{item['score']:.3f}", item["source"]]
        cells += [taste(item["item_id"])] if taste is not None else []
        table.add_row(*cells, item.get("reason") or "", style="bold" if new else None)
    console.print(table, markup=False)


def command_name() -> str:
    """How to type ``lambdarec`` here: the bare name when it is on PATH, else the path that ran this demo
    (``make demo`` runs ``.venv/bin/lambdarec``, which a newcomer's shell may not have on PATH)."""
    ran = Path(sys.argv[0])
    if ran.name != "lambdarec":
        ran = Path(sys.executable)
        suffix = " -m lambdarec"
    else:
        suffix = ""
    on_path = shutil.which("lambdarec")
    if not suffix and on_path and Path(on_path).resolve() == ran.resolve():
        return "lambdarec"
    try:
        shown = str(ran.absolute().relative_to(Path.cwd()))
    except ValueError:
        shown = str(ran)
    return shlex.quote(shown) + suffix


def next_steps(console: Console, paths: dict[str, str], user: str, split_at: str, url: str | None, keep: bool) -> None:
    """Where everything is and what to try next."""
    cfg = shlex.quote(paths["config"])
    cli = command_name()
    for label in ("config", "log", "store", "events", "logs", "report"):
        note(console, f"{label:<8} {paths[label]}")
    console.print()
    if keep and url:
        note(console, f"serving  {url}  (the speed layer and the server keep running)")
        note(console, f"stop     {cli} demo --stop --dir {shlex.quote(paths['dir'])}")
    else:
        note(console, "serve again (the ingest key printed in step 4 still works):")
        note(console, f"  {cli} speed run --config {cfg} &")
        note(console, f"  {cli} serve --config {cfg} &")
    base = url or "http://127.0.0.1:PORT"
    event = (
        '[{\\"event_id\\":\\"try-$(date +%s)\\",\\"user_id\\":\\"USER\\",\\"item_id\\":\\"i1\\",'
        '\\"event_type\\":\\"click\\",\\"timestamp\\":$(date +%s)}]'
    ).replace("USER", user)
    note(console, "try (KEY=the ingest key printed in step 4):")
    note(console, f"  curl -s '{base}/v1/users/{user}/recommendations?k=5&explain=true'")
    note(console, f'  curl -s -X POST {base}/v1/events -H "Authorization: Bearer $KEY" -d "{event}"')
    note(console, f"  {cli} recommend {user} --explain --config {cfg}")
    note(console, f"  {cli} snapshots list --config {cfg}")
    note(console, f"  {cli} replay -i {shlex.quote(paths['log'])} --split-at {split_at} --sample 5000 --config {cfg}")
