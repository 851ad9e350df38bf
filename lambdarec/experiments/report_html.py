"""The HTML page of ``lambdarec experiments report --html DIR``: the per-arm table, the lifts, the sample-ratio
check, and the daily CTR and conversion rate per arm, plotted (one self-contained file, the plot inlined).

matplotlib is imported when the page is drawn: the page is its only user here.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any


def write_html(doc: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    page, data = folder / "report.html", folder / "report.json"
    data.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    page.write_text(render_html(doc), encoding="utf-8")
    return page, data


def render_html(doc: dict[str, Any]) -> str:
    name = html.escape(doc["experiment"])
    level = f"{doc['confidence']:.0%}"
    rows = "".join(_arm_row(arm, doc["control"]) for arm in doc["arms"])
    srm = doc["srm"]
    srm_text = (
        f"<p class='bad'>Sample-ratio mismatch: p = {_p(srm['p_value'])} &lt; {srm['alpha']}. The arms' user "
        "counts do not follow their shares; the lifts below are not trustworthy until the cause is found.</p>"
        if srm["mismatch"]
        else f"<p>Sample ratio as configured (chi-square p = {_p(srm['p_value'])}).</p>"
    )
    since = f", events since {html.escape(doc['since'])}" if doc["since"] else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Experiment {name}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}.bad{{color:#b00}}</style></head>
<body><h1>Experiment {name}</h1>
<p>Lake version {doc["lake_version"]}{since}; control arm <b>{html.escape(doc["control"])}</b>; {level} confidence
intervals; lifts relative to control with a two-sided test.</p>
{srm_text}
<table><tr><th>arm</th><th>share</th><th>users</th><th>lists</th><th>impressions</th><th>clicks</th>
<th>conversions</th><th>CTR [{level} CI]</th><th>CTR lift [CI], p</th><th>conversion rate [CI]</th>
<th>conversion lift [CI], p</th></tr>
{rows}</table>
<h2>Daily</h2>
{_plot(doc)}
</body></html>
"""


def _arm_row(arm: dict[str, Any], control: str) -> str:
    cells = [html.escape(arm["arm"]) + (" (control)" if arm["arm"] == control else ""), f"{arm['share']:g}",
             arm["users"], arm["lists"], arm["impressions"], arm["clicks"], arm["conversions"],
             _rate(arm["ctr"]), _lift(arm.get("lift", {}).get("ctr")), _rate(arm["conversion_rate"]),
             _lift(arm.get("lift", {}).get("conversion_rate"))]  # fmt: skip
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>\n"


def _rate(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return "n/a"
    lo, hi = rate["ci"]
    interval = f" [{lo:.2%}, {hi:.2%}]" if lo is not None and hi is not None else ""
    return f"{rate['value']:.2%}{interval}"


def _lift(found: dict[str, Any] | None) -> str:
    if found is None:
        return ""
    if found["value"] is None:
        return "n/a"
    lo, hi = found["ci"]
    mark = " *" if found["significant"] else ""
    return f"{found['value']:+.1%} [{lo:+.1%}, {hi:+.1%}], p = {_p(found['p_value'])}{mark}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _plot(doc: dict[str, Any]) -> str:
    """The daily CTR and conversion rate per arm, as an inline PNG."""
    if not doc["daily"]:
        return "<p>No attributed events.</p>"
    from matplotlib.figure import Figure  # heavy: imported only when a page is drawn

    fig = Figure(figsize=(9, 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for arm in [a["arm"] for a in doc["arms"]]:
        points = [d for d in doc["daily"] if d["arm"] == arm]
        days = [d["date"] for d in points]
        for ax, key in zip(axes, ("ctr", "conversion_rate"), strict=True):
            ax.plot(days, [d[key] if d[key] is not None else float("nan") for d in points], marker="o", label=arm)
    for ax, title in zip(axes, ("CTR per day", "conversion rate per day"), strict=True):
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    encoded = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="daily CTR and conversion rate per arm" src="data:image/png;base64,{encoded}">'
