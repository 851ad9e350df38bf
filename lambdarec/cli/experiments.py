"""``lambdarec experiments``: the per-arm report of an experiment, and a user's arms.

Exit codes: 0 done; 1 the lake could not be read; 2 bad input (an experiment not in the settings, a bad --since,
no lake configured).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings

app = typer.Typer(help="A/B experiments: per-arm reports from the master dataset, users' arms.", no_args_is_help=True)


def _since(text: str | None) -> float | None:
    """ISO-8601 (a naive one is UTC) or epoch seconds/milliseconds; None when not given."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--since {text!r} is not an ISO-8601 date-time (2026-11-29T00:00:00Z) or epoch") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return number / 1000 if number >= 1e11 else number


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The experiment, as named in [experiments.NAME].")],
    since: Annotated[
        str | None, typer.Option("--since", help="Only events at or after this time (ISO-8601 or epoch).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write report.html (with the daily plot) and report.json here.")
    ] = None,
    confidence: Annotated[
        float, typer.Option("--confidence", min=0.5, max=0.999, help="Confidence level of intervals and tests.")
    ] = 0.95,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per arm: users, lists, impressions, clicks, conversions, CTR and conversion rate with confidence
    intervals, the lift over control with a two-sided test, and a sample-ratio-mismatch check.

    Events count for the arm named in their `context` (`experiment`, `arm`), as serving stamps impressions
    and as callers send clicks and conversions back.
    """
    from lambdarec.experiments.report import experiment_report
    from lambdarec.lake import LakeEmptyError, LakeError

    settings = load_settings(config)
    if name not in settings.experiments:
        known = ", ".join(settings.experiments) or "none"
        raise _fail(f"no experiment {name!r} in the settings ([experiments.{name}]); configured: {known}")
    try:
        doc = experiment_report(settings, name, since_s=_since(since), confidence=confidence)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except LakeEmptyError as exc:
        raise _fail(str(exc)) from None
    except (LakeError, OSError) as exc:
        raise _fail(f"cannot read the lake: {type(exc).__name__}: {exc}", 1) from None
    if html is not None:
        from lambdarec.experiments.report_html import write_html

        page, data = write_html(doc, html)
        doc["report"] = {"html": str(page), "json": str(data)}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(format_report(doc))


@app.command("assign")
def assign(
    user: Annotated[str, typer.Argument(metavar="ID", help="A user id (or a session id with --session).")],
    session: Annotated[bool, typer.Option("--session", help="ID is an anonymous session id.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The arm of a user (or session) in every experiment, as serving assigns it."""
    from lambdarec.experiments import assignments

    settings = load_settings(config)
    found = [vars(a) for a in assignments(settings.experiments, user, "session" if session else "user")]
    if as_json:
        typer.echo(json.dumps({"id": user, "assignments": found}, indent=2))
        return
    for a in found:
        served = " (served)" if a["served"] else ""
        typer.echo(f"{a['experiment']}: {a['arm'] or 'outside the traffic'}{served}")


def format_report(doc: dict[str, Any]) -> str:
    """The report as a text table."""
    level = f"{doc['confidence']:.0%}"
    lines = [f"experiment {doc['experiment']} (lake version {doc['lake_version']}; control {doc['control']})"]
    head = f"{'arm':<16}{'users':>8}{'impr.':>9}{'clicks':>8}{'conv.':>7}  CTR [{level} CI] / lift, p"
    lines.append(head)
    for arm in doc["arms"]:
        ctr = arm["ctr"]
        text = "n/a" if ctr["value"] is None else f"{ctr['value']:.3%} [{_pct(ctr['ci'][0])}, {_pct(ctr['ci'][1])}]"
        lines.append(f"{arm['arm']:<16}{arm['users']:>8}{arm['impressions']:>9}{arm['clicks']:>8}"
                     f"{arm['conversions']:>7}  {text}")  # fmt: skip
        for metric in ("ctr", "conversion_rate"):
            found = arm.get("lift", {}).get(metric)
            if found is not None and found["value"] is not None:
                lo, hi = found["ci"]
                star = " significant" if found["significant"] else ""
                lines.append(f"{'':<16}lift {metric}: {found['value']:+.1%} [{lo:+.1%}, {hi:+.1%}] "
                             f"p={found['p_value']:.3g}{star}")  # fmt: skip
    srm = doc["srm"]
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    p = "n/a" if srm["p_value"] is None else f"{srm['p_value']:.3g}"
    lines.append(f"sample ratio: {verdict} (chi-square p={p}, flagged below {srm['alpha']})")
    if doc.get("report"):
        lines.append(f"report: {doc['report']['html']} and {doc['report']['json']}")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3%}"
