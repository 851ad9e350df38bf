"""Replay end to end on a synthetic log with a taste drift after the split: the CLI, the report, the search."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from lambdarec.rank.merge import MergeWeights
from lambdarec.settings import Settings
from replay.protocol import ReplayConfig, run_replay
from replay.report import build_report
from replay.variants import standard_variants
from tests.e2e.replay.conftest import SPLIT, open_in_chromium, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SAMPLE, SEED = 1200, 3


@pytest.fixture(scope="module")
def replayed(drift_log: Path, small_config: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """``lambdarec replay ... --json --report DIR`` once; its JSON and report folder."""
    out = tmp_path_factory.mktemp("replay-report")
    proc = run_cli(
        "replay",
        *("-i", str(drift_log), "--split-at", SPLIT.isoformat(), "--sample", str(SAMPLE), "--seed", str(SEED)),
        *("--report", str(out), "--json", "--no-progress", "--config", str(small_config)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), out


def test_lambda_beats_batch_after_the_drift(replayed: tuple[dict, Path]) -> None:
    doc, _ = replayed
    v = doc["variants"]
    assert doc["events_scored"] == SAMPLE and doc["users"] > 100
    assert list(v) == ["popular", "batch", "batch+speed", "lambda"]
    # The batch lists point at the tastes users had before the drift; fresh state and sessions follow them.
    assert v["lambda"]["ci"]["ndcg@10"][0] > v["batch"]["ci"]["ndcg@10"][1]
    assert v["batch+speed"]["ndcg@10"] > v["batch"]["ndcg@10"]
    assert doc["ratios"]["lambda/batch"]["ci"]["ndcg@10"][0] > 1.15
    for name in v:
        assert set(v[name]["ci"]) >= {"ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20"}


def test_segments_report_warm_and_cold_users(replayed: tuple[dict, Path]) -> None:
    doc, out = replayed
    counts = doc["segment_events"]
    assert counts["warm"]["events"] + counts["cold"]["events"] == SAMPLE and counts["warm"]["events"] > 0
    for segment, variants in doc["segments"].items():
        if counts[segment]["events"]:
            assert list(variants) == ["popular", "batch", "batch+speed", "lambda"]
            assert "lambda/batch" in doc["segment_ratios"][segment]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "id='segment-warm'" in page and "id='segment-cold'" in page


def test_no_variant_recommends_what_the_user_already_did(drift_log: Path, small_config: Path) -> None:
    """Fair filtering: every list of every variant is free of the user's earlier items, warm or cold."""
    from replay.log import load_log

    settings = Settings.load(small_config)
    until = SPLIT + (SPLIT - SPLIT.replace(day=19))  # two days of replay keep it quick
    cfg = ReplayConfig(str(drift_log), split_at=SPLIT, until=until, ks=(10,), progress=False)
    run = run_replay(settings, cfg, standard_variants(MergeWeights.from_settings(settings.serving)))
    assert gc.get_freeze_count() == 0 and gc.isenabled()  # the loop froze what existed before it, and let go after
    frame = load_log(str(drift_log), settings.batch, split_at=SPLIT, until=until).frame
    seen: dict[str, set[str]] = {}
    scored = 0
    items = run.board.item_ids()
    users = list(run.board._users)
    lists = {v.name: run.board.lists(v.name) for v in run.variants}
    for row in frame.iter_rows(named=True):
        before = seen.setdefault(row["user_id"], set())
        if row["ts"] > run.until_ms:
            break
        if row["ts"] > int(SPLIT.timestamp() * 1000) and row["novel"]:
            assert users[run.board.user_codes[scored]] == row["user_id"]
            for name, table in lists.items():
                recommended = {items[c] for c in table[scored].tolist() if c >= 0}
                assert not recommended & before, (name, row["user_id"], recommended & before)
            scored += 1
        before.add(row["item_id"])
    assert scored == run.board.events > 100
    assert run.board.segments.count("cold") > 0 and run.board.segments.count("warm") > 0


def test_after_a_taste_shift_lambda_follows_the_new_taste_by_day_two(drift_log: Path, small_config: Path) -> None:
    """Fresh evidence outweighs the nightly list: the new clusters fill >= 60% of lambda's top-10 two days on."""
    import numpy as np

    from batch_layer.synth import SynthSpec, synthesize
    from tests.e2e.replay.conftest import DRIFT, START

    spec = SynthSpec(users=400, items=300, events=40_000, seed=7, days=30, start=START, drift_at=DRIFT)
    synth = synthesize(spec)  # the same log as the drift_log fixture: its tastes and clusters
    settings = Settings.load(small_config)
    cfg = ReplayConfig(str(drift_log), split_at=SPLIT, sample=SAMPLE, seed=SEED, ks=(10,), progress=False)
    run = run_replay(settings, cfg, standard_variants(MergeWeights.from_settings(settings.serving), ["lambda"]))
    board, items, users = run.board, run.board.item_ids(), list(run.board._users)
    shift_h = (DRIFT - SPLIT).total_seconds() / 3600
    shares: list[float] = []
    for j, top in enumerate(board.lists("lambda")):
        if 2 <= (board.hours[j] - shift_h) / 24 < 3:  # day 2 after the shift
            new = set(synth.tastes_after[int(users[board.user_codes[j]][1:])].tolist())
            listed = [items[c] for c in top[:10].tolist() if c >= 0]
            shares.append(float(np.mean([synth.item_cluster[int(i[1:])] in new for i in listed])))
    assert len(shares) > 50
    assert np.mean(shares) >= 0.6, np.mean(shares)


def test_same_seed_same_numbers(replayed: tuple[dict, Path], drift_log: Path, small_config: Path) -> None:
    doc, _ = replayed
    settings = Settings.load(small_config)
    cfg = ReplayConfig(str(drift_log), split_at=SPLIT, sample=SAMPLE, seed=SEED, progress=False)
    again = build_report(run_replay(settings, cfg, standard_variants(MergeWeights.from_settings(settings.serving))))
    assert json.loads(json.dumps(again["variants"])) == doc["variants"]


def test_report_files_open_in_a_browser_without_errors(replayed: tuple[dict, Path]) -> None:
    doc, out = replayed
    page, saved = out / "report.html", json.loads((out / "report.json").read_text())
    assert saved["variants"] == doc["variants"] and doc["report"]["html"] == str(page)
    dom = open_in_chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert errors == [], errors
    for figure in ("plot-metrics", "plot-staleness", "plot-coverage"):
        assert f'<figure id="{figure}"><svg' in dom.stdout, figure
    shot = out / "report.png"
    proc = open_in_chromium(page, f"--screenshot={shot}", "--window-size=1100,2600")
    assert proc.returncode == 0 and shot.stat().st_size > 20_000, proc.stderr[-2000:]


def test_tune_writes_the_best_weights_and_reports_the_test_window(
    drift_log: Path, small_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned.toml"
    proc = run_cli(
        "replay",
        "tune",
        *("-i", str(drift_log), "--split-at", "2024-01-18", "--validation-until", "2024-01-24"),
        *("--trials", "4", "--sample", "400", "--seed", "1", "--out", str(out)),
        *("--json", "--no-progress", "--config", str(small_config)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert len(doc["validation"]["trials"]) == 4
    best = doc["validation"]["trials"][doc["best_trial"]]
    assert best["ndcg@10"] == max(t["ndcg@10"] for t in doc["validation"]["trials"])
    assert set(doc["test"]["variants"]) == {"batch", "lambda", "lambda-tuned"}
    serving = Settings.load(out).serving
    assert serving.weight_session == doc["best_weights"]["weight_session"]
    assert serving.session_half_life_s == doc["best_weights"]["session_half_life_s"]


def test_rebatch_every_period_flips_snapshots_and_resets_staleness(drift_log: Path, small_config: Path) -> None:
    settings = Settings.load(small_config)
    cfg = ReplayConfig(
        str(drift_log), split_at=SPLIT, sample=300, seed=SEED, rebatch_every_s=3 * 86400, ks=(10,), progress=False
    )
    run = run_replay(settings, cfg, standard_variants(MergeWeights(), ["batch", "lambda"]))
    as_of = [s["as_of"][:10] for s in run.snapshots]
    assert as_of == ["2024-01-21", "2024-01-24", "2024-01-27", "2024-01-30"]
    assert max(run.board.hours) <= 72.0
    assert run.board.events == 300
