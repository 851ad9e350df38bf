"""The replay report's plots, as matplotlib figures drawn into inline SVG (no JavaScript, no outside file).

matplotlib is imported when a figure is drawn: the report is its only user.
"""

from __future__ import annotations

import io
from typing import Any


def svg(fig: Any) -> str:
    import matplotlib  # heavy: imported only when a report is drawn

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "lambdarec-replay", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG needs neither


def figure(width: float = 8.0, height: float = 3.6) -> Any:
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as exc:  # the report is the only user of matplotlib
        raise RuntimeError(
            "the HTML report needs matplotlib: pip install 'matplotlib>=3.8' (or run without --report)"
        ) from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def metrics_plot(doc: dict[str, Any], k: int) -> Any:
    fig = figure()
    ax = fig.add_subplot()
    names, metrics = list(doc["variants"]), [f"ndcg@{k}", f"hit@{k}", f"mrr@{k}"]
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        m = doc["variants"][name]
        values = [m[x] for x in metrics]
        err = [[m[x] - m["ci"][x][0] for x in metrics], [m["ci"][x][1] - m[x] for x in metrics]]
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, values, width * 0.95, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylabel("mean over scored events")
    ax.legend(frameon=False, ncols=min(len(names), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def staleness_plot(doc: dict[str, Any]) -> Any:
    """One line per variant over the doubling bins of hours since the snapshot, drawn evenly spaced."""
    st = doc["staleness"]
    fig = figure()
    ax = fig.add_subplot()
    xs = list(range(len(st["bins_hours"])))
    key = f"ndcg@{st['k']}"
    for name, per in st["variants"].items():
        ax.plot(xs, per[key], marker="o", label=name)
    labels = [
        f"{hours_label(lo)}-{hours_label(hi)}\nn={n}"
        for (lo, hi), n in zip(st["bins_hours"], st["events"], strict=True)
    ]
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_xlabel("hours since the snapshot's data cut-off (n: events scored in the bin)")
    ax.set_ylabel(key)
    ax.legend(frameon=False, ncols=min(len(st["variants"]), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(alpha=0.3)
    return fig


def hours_label(h: float) -> str:
    return f"{h:g}h" if h < 48 else f"{h / 24:.0f}d"


def coverage_plot(doc: dict[str, Any], k: int) -> Any:
    fig = figure(8.0, 3.2)
    names = list(doc["variants"])
    for pos, (metric, label) in enumerate(
        [(f"coverage@{k}", "share of catalogue recommended"), (f"novelty@{k}", "mean -log2 popularity share")]
    ):
        ax = fig.add_subplot(1, 2, pos + 1)
        ax.bar(names, [doc["variants"][n][metric] for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set_title(metric)
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelrotation=20)
        ax.grid(axis="y", alpha=0.3)
    return fig
