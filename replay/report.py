"""What a replay says: the JSON document, the table on stdout, and a self-contained HTML report with plots.

The HTML file embeds its plots as inline SVG (matplotlib, no JavaScript, no outside file), so it can be mailed
or archived as it is. ``report.json`` beside it holds the same figures.

Example
-------
>>> doc = build_report(run)                      # doctest: +SKIP
>>> print(format_table(doc))                     # doctest: +SKIP
>>> write_report(doc, Path("var/replay"))        # doctest: +SKIP
(PosixPath('var/replay/report.html'), PosixPath('var/replay/report.json'))
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replay.metrics import staleness, summarise
from replay.plots import coverage_plot, metrics_plot, staleness_plot, svg
from replay.protocol import ReplayRun

PROTOCOL = (
    "Batch job on the events at or before the split; speed state warmed up with speed.recent_ttl_s of events "
    "before it; later events replayed in event-time order. Before each scored event (the user's first touch of "
    "the item; all of them, or a seeded sample), every variant asks serving's request path for the user's "
    "top-K with the current session's items, then the event is applied through the speed layer's state "
    "functions. Every variant removes the same seen set: the user's training history plus every item the "
    "user touched before the scored event. Segments: warm (the user has a row in the snapshot) and cold. "
    "Point values average over scored events; intervals resample users."
)
SEGMENTS = ("warm", "cold")


def build_report(run: ReplayRun) -> dict[str, Any]:
    """The replay's figures as plain data (the JSON written by ``--json`` and to ``report.json``)."""
    cfg, board = run.config, run.board

    def summary_of(part: Any) -> dict[str, Any]:  # the whole board and each segment, scored alike
        return summarise(
            part,
            cfg.ks,
            catalogue=run.catalogue,
            popularity=run.popularity,
            draws=cfg.bootstrap_draws,
            seed=cfg.seed,
            baselines=("popular", "batch", "batch+speed"),
        )

    summary = summary_of(board)
    segments, segment_ratios, segment_events = {}, {}, {}
    for name in SEGMENTS:
        part = board.subset(name)
        segment_events[name] = {"events": part.events, "users": part.users}
        if part.events == 0:
            segments[name], segment_ratios[name] = {}, {}
            continue
        seg = summary_of(part)
        segments[name], segment_ratios[name] = seg["variants"], seg["ratios"]
    return {
        "variants": summary["variants"],
        "ratios": summary["ratios"],
        "segments": segments,
        "segment_ratios": segment_ratios,
        "segment_events": segment_events,
        "events_scored": board.events,
        "users": board.users,
        "events_replayed": run.events_replayed,
        "events_novel": run.events_novel,
        "warmup_events": run.warmup_events,
        "catalogue_items": run.catalogue,
        "k": list(cfg.ks),
        "interactions": str(cfg.interactions),
        "split_at": cfg.split_at.isoformat(),
        "until": datetime.fromtimestamp(run.until_ms / 1000, UTC).isoformat(),
        "sample": cfg.sample,
        "seed": cfg.seed,
        "rebatch_every_s": cfg.rebatch_every_s,
        "session_gap_s": cfg.session_gap_s,
        "snapshots": run.snapshots,
        "staleness": staleness(board, cfg.ks[0], min_events=10),
        "variant_settings": {v.name: v.describe() for v in run.variants},
        "bootstrap": summary["bootstrap"],
        "timings_s": run.timings_s,
        "protocol": PROTOCOL,
    }


def format_table(doc: dict[str, Any]) -> str:
    """A human table: one block per K, one row per variant, 95% intervals in brackets."""
    lines = [
        f"replay: {doc['events_scored']} events scored for {doc['users']} users "
        f"({doc['events_replayed']} replayed), split {doc['split_at']}, until {doc['until']}",
    ]
    width = max(len(v) for v in doc["variants"]) + 2
    for k in doc["k"]:
        head = f"{'variant':<{width}}" + "".join(f"{m + '@' + str(k):>26}" for m in ("ndcg", "hit", "mrr"))
        lines += ["", head + f"{'coverage@' + str(k):>14}{'novelty@' + str(k):>12}", "-" * (len(head) + 26)]
        for name, m in doc["variants"].items():
            cells = "".join(_cell(m, f"{metric}@{k}") for metric in ("ndcg", "hit", "mrr"))
            lines.append(f"{name:<{width}}{cells}{m[f'coverage@{k}']:>14.4f}{m[f'novelty@{k}']:>12.3f}")
    k = doc["k"][0]
    for pair, ratio in doc["ratios"].items():
        if pair.endswith("/batch") or pair == "lambda/popular":
            lo, hi = ratio["ci"][f"ndcg@{k}"]
            lines.append(f"{pair} ndcg@{k}: {ratio[f'ndcg@{k}']:.3f} [{lo:.3f}, {hi:.3f}]")
    for segment, ratios in doc.get("segment_ratios", {}).items():
        counts = doc["segment_events"][segment]
        for pair in ("lambda/batch", "lambda/popular"):
            if pair in ratios:
                r = ratios[pair]
                lo, hi = r["ci"][f"ndcg@{k}"]
                lines.append(
                    f"{segment} ({counts['events']} events, {counts['users']} users) {pair} ndcg@{k}: "
                    f"{r[f'ndcg@{k}']:.3f} [{lo:.3f}, {hi:.3f}]"
                )
    lines.append("timings (s): " + ", ".join(f"{name} {sec:.1f}" for name, sec in doc["timings_s"].items()))
    return "\n".join(lines)


def _cell(m: dict[str, Any], key: str) -> str:
    lo, hi = m["ci"][key]
    return f"{m[key]:>9.4f} [{lo:.4f}, {hi:.4f}]"


def write_report(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir`` (created if missing); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(doc), encoding="utf-8")
    return html_path, json_path


def render_html(doc: dict[str, Any]) -> str:
    """The whole report as one HTML page with inline SVG plots."""
    k = doc["k"][0]
    setup = {
        "interactions": doc["interactions"],
        "split at": doc["split_at"],
        "until": doc["until"],
        "events replayed": doc["events_replayed"],
        "events scored": f"{doc['events_scored']} ({_scored_what(doc['sample'])})",
        "users scored": doc["users"],
        "catalogue items": doc["catalogue_items"],
        "snapshots": len(doc["snapshots"]),
        "seed": doc["seed"],
        "timings (s)": ", ".join(f"{n} {s:.1f}" for n, s in doc["timings_s"].items()),
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lambdarec replay report</title>",
        f"<style>{_CSS}</style></head><body><h1>Replay evaluation</h1>",
        f"<p class='note'>{html.escape(doc['protocol'])}</p>",
        "<h2>Setup</h2>" + _kv_table(setup),
        f"<h2>Metrics</h2>{_metrics_table(doc)}",
        f"<h2>Ratios (ndcg@{k}, paired 95% intervals)</h2>{_ratios_table(doc, k)}",
        *_segment_sections(doc, k),
        f"<h2>Quality per variant (@{k}, 95% intervals over users)</h2>",
        f"<figure id='plot-metrics'>{svg(metrics_plot(doc, k))}</figure>",
        f"<h2>Staleness: ndcg@{k} against hours since the snapshot</h2>",
        f"<figure id='plot-staleness'>{svg(staleness_plot(doc))}</figure>",
        f"<h2>Catalogue coverage and novelty (@{k})</h2>",
        f"<figure id='plot-coverage'>{svg(coverage_plot(doc, k))}</figure>",
        "<h2>Variants</h2>" + _variants_table(doc),
        "</body></html>",
    ]
    return "\n".join(parts)


def _scored_what(sample: int | None) -> str:
    return f"a seeded sample of {sample} novel events" if sample else "every novel event"


def _kv_table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table class='kv'>{body}</table>"


def _metrics_table(doc: dict[str, Any]) -> str:
    """One table per K: a row per variant, each metric with its interval underneath."""
    tables = []
    for k in doc["k"]:
        keys = [f"{m}@{k}" for m in ("ndcg", "hit", "mrr", "coverage", "novelty")]
        head = "<tr><th>variant</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in keys) + "</tr>"
        rows = []
        for name, m in doc["variants"].items():
            cells = []
            for key in keys:
                ci = m["ci"].get(key)
                extra = f"<br><small>[{ci[0]:.4f}, {ci[1]:.4f}]</small>" if ci else ""
                cells.append(f"<td>{m[key]:.4f}{extra}</td>")
            rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
        tables.append(f"<table class='metrics'>{head}{''.join(rows)}</table>")
    return "\n".join(tables)


def _segment_sections(doc: dict[str, Any], k: int) -> list[str]:
    """Per segment (warm, cold): its metrics table and its ratios, each segment under its own heading."""
    out = []
    for name, variants in doc.get("segments", {}).items():
        counts = doc["segment_events"][name]
        title = f"Segment {name}: {counts['events']} events, {counts['users']} users"
        if not variants:
            out.append(f"<h2 id='segment-{name}'>{html.escape(title)}</h2><p class='note'>no scored event</p>")
            continue
        sub = {"k": doc["k"], "variants": variants, "ratios": doc["segment_ratios"][name]}
        out.append(
            f"<h2 id='segment-{name}'>{html.escape(title)}</h2>{_metrics_table(sub)}"
            f"<h3>Ratios (ndcg@{k}, paired 95% intervals)</h3>{_ratios_table(sub, k)}"
        )
    return out


def _ratios_table(doc: dict[str, Any], k: int) -> str:
    """Each variant's ndcg@K over each baseline's, with the interval from the same user resamples."""
    key = f"ndcg@{k}"
    rows = {pair: f"{r[key]:.3f}  [{r['ci'][key][0]:.3f}, {r['ci'][key][1]:.3f}]" for pair, r in doc["ratios"].items()}
    return _kv_table(rows)


def _variants_table(doc: dict[str, Any]) -> str:
    """What each variant used: its kind, the parts of the state switched on, and its re-rank weights."""
    settings = doc["variant_settings"]
    weight_keys = list(next(iter(settings.values()))["weights"]) if settings else []
    cols = ["kind", "fold-in", "session", "trending", *(_SHORT.get(w, w) for w in weight_keys)]
    head = "<tr><th>variant</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    rows = []
    for name, v in settings.items():
        values = [v["kind"], v["fold_in"], v["session"], v["trending"], *(v["weights"][w] for w in weight_keys)]
        rows.append(
            f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in values) + "</tr>"
        )
    return f"<table class='metrics'>{head}{''.join(rows)}</table>"


_SHORT = {
    "weight_cf": "w cf",
    "weight_session": "w session",
    "weight_trending": "w trending",
    "session_half_life_s": "half-life s",
    "mmr_lambda": "mmr λ",
    "fresh_boost": "fresh boost",
}

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 64rem; margin: 2rem auto; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
table.kv th, table.kv td, table.metrics tr > th:first-child { text-align: left; }
small { color: #777; } .note { color: #555; font-size: 0.9rem; } figure { margin: 0; }
svg { max-width: 100%; height: auto; }
"""
