"""Experiments end to end: events -> event log -> archiver -> lake -> ``lambdarec experiments report``.

The first test plants known lifts (CTR and conversion rate) in synthetic traffic split by the real assignment
and checks the report recovers them within their confidence intervals, calls them significant, and passes the
sample-ratio check; a second experiment in the same lake loses a share of one arm's users and must fail it.
The second test runs serving itself: impressions it stamps and clicks sent back with the arm are counted
exactly per arm.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from batch_layer.archive.archiver import Archiver
from batch_layer.synth import SynthSpec, synthesize
from lambdarec.cli import app
from lambdarec.eventlog import open_log, send_events
from lambdarec.events import EventRules
from lambdarec.experiments import assign_arm
from lambdarec.lake import open_lake
from lambdarec.settings import ExperimentSettings, Settings
from tests.unit.serving.conftest import make_settings, publish, serving

pytestmark = [pytest.mark.e2e]

DAY = 86400.0
EXPERIMENTS = {
    "home": {"salt": "home-2026", "arms": [{"name": "control"}, {"name": "treat"}]},
    "leaky": {"salt": "leaky", "arms": [{"name": "control"}, {"name": "treat"}]},
}
CTR = {"control": 0.05, "treat": 0.06}  # planted CTR lift +20%
CONVERSION = {"control": 0.10, "treat": 0.13}  # planted conversion lift +30%


def settings_at(root: Path) -> Settings:
    return Settings.load(
        overrides={
            "log": {"url": f"sqlite:///{root}/events"},
            "lake": {"url": str(root / "lake")},
            "experiments": EXPERIMENTS,
        }
    )


def traffic(experiment: str, users: int, rng: random.Random, start_s: float, drop: float = 0.0) -> list[dict]:
    """Per user: 3 lists of 10 items over 3 days, clicks per item shown and one conversion at the planted rates.
    ``drop``: share of the treatment arm's users whose events are lost (a sample-ratio mismatch)."""
    exp = ExperimentSettings.model_validate(EXPERIMENTS[experiment])
    events = []
    for n in range(users):
        user = f"{experiment}-u{n}"
        arm = assign_arm(exp, user)
        if arm == "treat" and rng.random() < drop:
            continue
        context = {"experiment": experiment, "arm": arm}
        for day in range(3):
            ts = start_s + day * DAY + rng.uniform(0, DAY / 2)
            items = [f"i{rng.randrange(500)}" for _ in range(10)]
            items = list(dict.fromkeys(items))
            events.append({"event_id": f"{user}-imp{day}", "user_id": user, "event_type": "impression",
                           "item_ids": items, "timestamp": ts, "context": context})  # fmt: skip
            for m, item in enumerate(items):
                if rng.random() < CTR[arm]:
                    events.append({"event_id": f"{user}-c{day}-{m}", "user_id": user, "item_id": item,
                                   "event_type": "click", "timestamp": ts + 5, "context": context})  # fmt: skip
        if rng.random() < CONVERSION[arm]:
            events.append({"event_id": f"{user}-buy", "user_id": user, "item_id": "i1", "event_type": "purchase",
                           "timestamp": start_s + 2.6 * DAY, "context": context})  # fmt: skip
        events.append(
            {
                "event_id": f"{user}-view",
                "user_id": user,
                "item_id": "i2",
                "event_type": "view",
                "timestamp": start_s + DAY,
            }
        )  # fmt: skip  (not attributed: counts for no arm)
    return events


def archive(settings: Settings) -> None:
    with Archiver(settings) as archiver:
        archiver.run(until_idle_s=0.5)


def report(settings: Settings, root: Path, name: str, *args: str) -> dict:
    config = root / "settings.toml"
    config.write_text(
        f'[log]\nurl = "{settings.log.url}"\n[lake]\nurl = "{settings.lake.url}"\n'
        + "".join(
            f'[experiments.{n}]\nsalt = "{e["salt"]}"\n'
            + "".join(f'[[experiments.{n}.arms]]\nname = "{a["name"]}"\n' for a in e["arms"])
            for n, e in EXPERIMENTS.items()
        )
    )
    result = CliRunner().invoke(app, ["experiments", "report", name, "--config", str(config), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_planted_lifts_are_recovered_within_their_intervals(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    rng = random.Random(7)
    # 01:00 UTC of a day four to five days ago: each planted day's events (the first half of the day, and the
    # purchases at 2.6 days) fall on three calendar dates whatever the time of day the test runs at
    start = (time.time() - 4 * DAY) // DAY * DAY + 3600
    events = traffic("home", 6000, rng, start) + traffic("leaky", 3000, rng, start, drop=0.25)
    with open_log(settings) as log:
        log.ensure_topic()
        sent = send_events(log, [json.dumps(e) for e in events], EventRules.from_settings(settings))
    assert sent.rejected == 0, sent.rejections[:3]
    archive(settings)

    doc = report(settings, tmp_path, "home", "--html", str(tmp_path / "html"))
    arms = {a["arm"]: a for a in doc["arms"]}
    assert doc["control"] == "control" and set(arms) == {"control", "treat"}
    assert sum(a["users"] for a in arms.values()) == 6000
    for metric, planted in (("ctr", CTR), ("conversion_rate", CONVERSION)):
        for arm, rate in planted.items():
            lo, hi = arms[arm][metric]["ci"]
            assert lo <= rate <= hi, (metric, arm, arms[arm][metric])
        found = arms["treat"]["lift"][metric]
        true_lift = planted["treat"] / planted["control"] - 1
        assert found["ci"][0] <= true_lift <= found["ci"][1], (metric, found)
        assert found["significant"] and found["p_value"] < 0.05
        assert "lift" not in arms["control"]
    assert not doc["srm"]["mismatch"] and doc["srm"]["p_value"] > 0.001
    assert arms["control"]["lists"] == 3 * arms["control"]["users"]
    days = {d["date"] for d in doc["daily"]}
    assert len(days) == 3 and len(doc["daily"]) == 6
    page = (tmp_path / "html" / "report.html").read_text()
    assert "data:image/png;base64," in page and "treat" in page
    assert json.loads((tmp_path / "html" / "report.json").read_text())["arms"] == doc["arms"]

    leaky = report(settings, tmp_path, "leaky")
    assert leaky["srm"]["mismatch"] and leaky["srm"]["p_value"] < 0.001, (
        leaky["srm"],
        [a["users"] for a in leaky["arms"]],
    )

    later = report(settings, tmp_path, "home", "--since", str(start + 2 * DAY))
    later_arms = {a["arm"]: a for a in later["arms"]}
    assert later_arms["control"]["lists"] == later_arms["control"]["users"]  # one day left: one list per user


def test_unknown_experiment_and_bad_since_exit_2(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    config = tmp_path / "s.toml"
    config.write_text(f'[lake]\nurl = "{settings.lake.url}"\n')
    runner = CliRunner()
    unknown = runner.invoke(app, ["experiments", "report", "nope", "--config", str(config)])
    assert unknown.exit_code == 2 and "no experiment 'nope'" in unknown.output


def test_serving_stamps_impressions_and_clicks_sent_back_count_per_arm(tmp_path: Path) -> None:
    log_file = tmp_path / "log.parquet"
    synthesize(SynthSpec(users=300, items=200, events=12_000, seed=5)).events.write_parquet(log_file)
    base = make_settings(tmp_path)
    publish(base, log_file)
    settings = base.model_copy(
        update={
            "lake": base.lake.model_copy(update={"url": str(tmp_path / "lake")}),
            "experiments": {n: ExperimentSettings.model_validate(e) for n, e in EXPERIMENTS.items()},
        }
    )
    users = [f"u{n}" for n in range(40)]
    shown: dict[str, int] = {"control": 0, "treat": 0}
    clicks: dict[str, int] = {"control": 0, "treat": 0}
    with serving(settings) as client:
        for user in users:
            body = client.get(f"/v1/users/{user}/recommendations", params={"k": 5, "impressions": "true"}).json()
            assert body["impression_id"] and body["experiment"] == "home"
            shown[body["arm"]] += len(body["items"])
            click = {"event_id": f"c-{user}", "user_id": user, "item_id": body["items"][0]["item_id"],
                     "event_type": "click", "timestamp": time.time(),
                     "context": {"experiment": body["experiment"], "arm": body["arm"]}}  # fmt: skip
            assert (
                client.post("/v1/events", json=click, headers={"X-API-Key": "ingest-key-for-tests"}).status_code == 202
            )
            clicks[body["arm"]] += 1
        plain = client.get("/v1/users/u0/recommendations", params={"k": 5}).json()
        assert plain["impression_id"] is None
        anon = client.post("/v1/recommendations", json={"session_id": "s-1", "k": 4, "impressions": True}).json()
        assert anon["results"][0]["impression_id"]
        metrics = client.get("/metrics").text
    counted = 'lambdarec_experiment_events_total{arm="treat",event_type="click",experiment="home"}'
    assert f"{counted} {float(clicks['treat'])}" in metrics
    archive(settings)
    lake = open_lake(settings)
    impressions = lake.scan().filter(pl.col("event_type") == "impression").collect()
    assert impressions.height == len(users) + 1
    anon_row = impressions.filter(pl.col("user_id") == "s-1")
    assert anon_row["session_id"].to_list() == ["s-1"] and anon_row["item_ids"].list.len().to_list() == [4]
    doc = report(settings, tmp_path, "home")
    arms = {a["arm"]: a for a in doc["arms"]}
    for arm in ("control", "treat"):
        assert arms[arm]["impressions"] == shown[arm] + (4 if anon["results"][0]["arm"] == arm else 0)
        assert arms[arm]["clicks"] == clicks[arm]
