"""deploy/prometheus/lambdarec-rules.yaml: the alerts docs/metrics.md gives, as a rules file an operator loads.

Checked by `promtool check rules` and by `promtool test rules` on series where each alert must fire and series
where it must stay quiet (make test installs promtool from Debian's `prometheus` package where it runs as root;
with CI=true a missing promtool fails, never skips). The schema test runs everywhere."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_docs import METRICS, _metrics_in_code
from .usage import DEPLOY

RULES = DEPLOY / "prometheus" / "lambdarec-rules.yaml"
REQUIRED = {  # what an operator of this system alerts on, by the metric it watches
    "LambdarecFreshnessP99High": "lambdarec_event_to_served_seconds",
    "LambdarecConsumerLagHigh": "lambdarec_speed_lag_records",
    "LambdarecDegradedShareHigh": "lambdarec_serving_degraded_total",
    "LambdarecSnapshotStale": "lambdarec_serving_snapshot_data_age_seconds",
}
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2", "5", "10", "30", "60", "+Inf")
USERS_ROUTE = 'route="/v1/users/{user_id}/recommendations",method="GET"'


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def test_rules_file_has_the_operator_alerts_on_metrics_that_exist() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert all(set(g) == {"name", "rules"} and g["rules"] for g in groups)
    code = _metrics_in_code()
    records = {rule["record"] for rule in _rules() if "record" in rule}
    alerts = _alerts()
    for name, metric in REQUIRED.items():
        assert name in alerts, f"no alert {name}"
        watched = _metrics_of(alerts[name]["expr"], records)
        assert metric in watched, (name, watched)
    for rule in _rules():
        for metric in _metrics_of(rule["expr"], records):
            assert metric in code, f"{rule.get('alert') or rule['record']} uses {metric}, which no code exposes"
    docs = METRICS.read_text()
    for name, rule in alerts.items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]
        assert f"`{name}`" in docs, f"docs/metrics.md does not explain {name}"


def _metrics_of(expr: str, records: set[str]) -> set[str]:
    """Metric names an expression reads, with recording rules expanded and histogram suffixes removed."""
    found = set()
    for name in re.findall(r"lambdarec[a-z0-9_:]*", expr):
        if ":" in name:
            rule = next(r for r in _rules() if r.get("record") == name)
            found |= _metrics_of(rule["expr"], records)
        else:
            found.add(re.sub(r"_(bucket|count|sum)$", "", name))
    return found


def _histogram(name: str, labels: str, per_minute_above: dict[str, int], minutes: int) -> list[dict[str, str]]:
    """Cumulative bucket series of a histogram receiving, each minute, ``n`` observations above each bound."""
    series = []
    for le in BUCKETS:
        n = sum(count for bound, count in per_minute_above.items() if le == "+Inf" or float(le) >= float(bound))
        series.append({"series": f'{name}_bucket{{{labels},le="{le}"}}', "values": f"0+{n}x{minutes}"})
    return series


def _case(alert: str, series: list[dict[str, str]], at: str, fires: bool) -> dict[str, Any]:
    rule = _alerts()[alert]
    expected = [{"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}] if fires else []
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
    }


def _scenarios() -> list[dict[str, Any]]:
    e2s, req = "lambdarec_event_to_served_seconds", "lambdarec_serving_request_seconds"
    lag = "lambdarec_speed_lag_records"
    return [
        # p99 of event -> first served: every observation between 5 and 10 s fires; all under 0.5 s does not
        _case("LambdarecFreshnessP99High", _histogram(e2s, 'serve="first"', {"10": 10}, 40), "30m", True),
        _case("LambdarecFreshnessP99High", _histogram(e2s, 'serve="first"', {"0.5": 10}, 40), "30m", False),
        _case("LambdarecConsumerLagHigh", [{"series": f'{lag}{{partition="0"}}', "values": "20000x40"}], "30m", True),
        _case("LambdarecConsumerLagHigh", [{"series": f'{lag}{{partition="0"}}', "values": "100x40"}], "30m", False),
        # two members report the same partition's lag: counted once, so 6000 + 6000 is not 12,000 behind
        _case(
            "LambdarecConsumerLagHigh",
            [
                {"series": f'{lag}{{partition="0",pod="a"}}', "values": "6000x40"},
                {"series": f'{lag}{{partition="0",pod="b"}}', "values": "6000x40"},
            ],
            "30m",
            False,
        ),
        _case(
            "LambdarecSpeedStalled",
            [
                {"series": f'{lag}{{partition="0"}}', "values": "50x40"},
                {"series": "lambdarec_speed_events_total", "values": "100x40"},
            ],
            "30m",
            True,
        ),
        _case(
            "LambdarecSpeedStalled",
            [
                {"series": f'{lag}{{partition="0"}}', "values": "50x40"},
                {"series": "lambdarec_speed_events_total", "values": "0+10x40"},
            ],
            "30m",
            False,
        ),
        _case(
            "LambdarecDegradedShareHigh",
            [
                {"series": 'lambdarec_serving_degraded_total{reason="store-unavailable"}', "values": "0+10x40"},
                {"series": 'lambdarec_serving_lists_total{kind="personalised"}', "values": "0+100x40"},
            ],
            "20m",
            True,
        ),
        _case(
            "LambdarecDegradedShareHigh",
            [
                {"series": 'lambdarec_serving_degraded_total{reason="store-unavailable"}', "values": "0+1x40"},
                {"series": 'lambdarec_serving_lists_total{kind="personalised"}', "values": "0+100x40"},
            ],
            "20m",
            False,
        ),
        _case(
            "LambdarecSnapshotStale",
            [{"series": "lambdarec_serving_snapshot_data_age_seconds", "values": "180000+60x60"}],
            "40m",
            True,
        ),
        _case(
            "LambdarecSnapshotStale",
            [{"series": "lambdarec_serving_snapshot_data_age_seconds", "values": "3600+60x60"}],
            "40m",
            False,
        ),
        _case(
            "LambdarecServing5xx",
            [{"series": f'lambdarec_serving_requests_total{{{USERS_ROUTE},status="503"}}', "values": "0+1x30"}],
            "20m",
            True,
        ),
        _case(
            "LambdarecServing5xx",
            [{"series": f'lambdarec_serving_requests_total{{{USERS_ROUTE},status="200"}}', "values": "0+100x30"}],
            "20m",
            False,
        ),
        _case("LambdarecServingP99High", _histogram(req, USERS_ROUTE, {"0.1": 100}, 40), "30m", True),
        _case("LambdarecServingP99High", _histogram(req, USERS_ROUTE, {"0.01": 100}, 40), "30m", False),
        _case(
            "LambdarecDeadLetters", [{"series": "lambdarec_speed_dead_letters_total", "values": "0+1x10"}], "10m", True
        ),
        _case(
            "LambdarecDeadLetters", [{"series": "lambdarec_speed_dead_letters_total", "values": "5x70"}], "70m", False
        ),
    ]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus; `make test` does it as root)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return found


def test_promtool_checks_the_rules_and_every_alert_fires_only_when_it_should(tmp_path: Path) -> None:
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scenarios = _scenarios()
    assert {c["alert_rule_test"][0]["alertname"] for c in scenarios} == set(_alerts())  # every alert is exercised
    spec = tmp_path / "rules-test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": scenarios}))
    tested = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
