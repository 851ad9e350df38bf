"""A benchmark's figures carry the goal they are held to: each JSON line says the goal and whether it was met, the
table shows it beside the figure with a verdict line under it, and ``--check`` turns a missed goal into exit 1.
Nothing here measures anything: the results are made up."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator

import pytest

import benchmarks.__main__ as entry
from benchmarks.common import Goal, Result, table, verdict


def _result(metric: str, ours: float, reference: float, goal: Goal | None, **kw: object) -> Result:
    return Result("demo", metric, ours, reference, kw.pop("unit", "req/s"), "small", goal=goal, **kw)  # type: ignore[arg-type]


def test_a_ratio_goal_reads_the_ratio_the_way_the_table_prints_it() -> None:
    assert _result("qps", 650, 1000, Goal(ratio=0.6)).met is True
    assert _result("qps", 590, 1000, Goal(ratio=0.6)).met is False
    # lower is better: the ratio is reference / ours, so a goal of 0.83 is "at most 1.2x the reference"
    assert _result("rss", 119, 100, Goal(ratio=1 / 1.2), higher_is_better=False, unit="MiB").met is True
    assert _result("rss", 125, 100, Goal(ratio=1 / 1.2), higher_is_better=False, unit="MiB").met is False


def test_bounds_on_ours_hold_whatever_the_reference() -> None:
    p99 = Goal(at_most=10.0)
    assert _result("p99", 9.9, 0.5, p99, higher_is_better=False, unit="ms").met is True
    assert _result("p99", 10.1, 50.0, p99, higher_is_better=False, unit="ms").met is False
    both = Goal(ratio=0.8, at_least=5000)  # every bound given must hold
    assert _result("rows", 6000, 7000, both).met is True
    assert _result("rows", 4000, 4100, both).met is False  # ratio met, rows/s not
    assert _result("rows", 6000, 9000, both).met is False  # rows/s met, ratio not


def test_a_figure_that_is_not_a_number_misses_its_goal_and_a_figure_without_one_is_not_judged() -> None:
    assert _result("p99", float("nan"), 250.0, Goal(at_most=250.0), higher_is_better=False, unit="ms").met is False
    assert _result("cpu", 5.0, 4.0, None).met is None
    with pytest.raises(ValueError, match="bound"):
        Goal()


def test_the_json_line_names_the_goal_and_whether_it_was_met_and_leaves_both_out_without_one() -> None:
    line = json.loads(_result("p99", 12.5, 1.0, Goal(at_most=10.0), higher_is_better=False, unit="ms").to_json())
    assert (line["goal"], line["met"]) == ("<= 10 ms", False)
    line = json.loads(_result("qps", 650, 1000, Goal(ratio=0.6)).to_json())
    assert (line["goal"], line["met"], line["ratio"]) == ("ratio >= 0.6", True, 0.65)
    assert {"goal", "met"}.isdisjoint(json.loads(_result("cpu", 5.0, 4.0, None).to_json()))
    assert Goal(ratio=1 / 1.2, at_least=5000).describe("rows/s") == "ratio >= 0.833, >= 5000 rows/s"


def test_the_table_shows_each_verdict_and_sums_them_up() -> None:
    results = [
        _result("qps cycled", 650, 1000, Goal(ratio=0.6)),
        _result("qps no repeat", 310, 1000, Goal(ratio=0.6)),
        _result("per cpu-second", 660, 1000, None),
    ]
    text = table(results)
    row = {r.metric: next(line for line in text.splitlines() if r.metric in line) for r in results}
    assert row["qps cycled"].endswith("req/s      ratio >= 0.6: met")
    assert row["qps no repeat"].endswith("ratio >= 0.6: NOT MET")
    assert row["per cpu-second"].endswith("req/s")  # no goal: no verdict
    assert text.splitlines()[-1] == "goals: 1 of 2 met; not met: qps no repeat"
    assert verdict(results[:1]) == "goals: 1 of 1 met"
    assert verdict(results[2:]) == "goals: none judged in these results"


def _fake_benchmark(monkeypatch: pytest.MonkeyPatch, results: list[Result]) -> None:
    module = types.ModuleType("benchmarks_fake_goals")

    def run(scale: str, args: object) -> Iterator[Result]:
        yield from results

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks_fake_goals", module)
    monkeypatch.setitem(entry.BENCHMARKS, "fake", ("benchmarks_fake_goals", "made-up results"))


def test_check_exits_1_naming_the_missed_goal_and_0_when_every_goal_is_met(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missed = [_result("qps", 650, 1000, Goal(ratio=0.6)), _result("p99", 30.0, 1.0, Goal(at_most=10.0), unit="ms")]
    _fake_benchmark(monkeypatch, missed)
    assert entry.main(["fake", "--check", "--json"]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["met"] for line in out.splitlines()] == [True, False]
    assert "goals: 1 of 2 met; not met: p99" in err
    assert entry.main(["fake"]) == 0  # without --check a missed goal is reported, not an error
    assert "NOT MET" in capsys.readouterr().out
    _fake_benchmark(monkeypatch, [*missed[:1], _result("cpu", 5.0, 4.0, None)])
    assert entry.main(["fake", "--check"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("goals: 1 of 1 met")
