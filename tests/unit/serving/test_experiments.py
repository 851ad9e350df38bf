"""Experiments in serving: sticky arms in body and headers, per-arm overrides, assignments, a pinned snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lambdarec.experiments import assign_arm
from lambdarec.model.snapshot import USER_IDS, SnapshotModel
from lambdarec.settings import ExperimentSettings, Settings
from lambdarec.store import open_store
from tests.unit.serving.conftest import make_settings, publish, serving

EXPERIMENT = {
    "salt": "home-v2",
    "traffic": 0.8,
    "arms": [
        {"name": "control", "popular_only": True},
        {"name": "diverse", "serving": {"mmr_lambda": 0.4, "weight_trending": 0.0}},
    ],
}


def with_experiments(settings: Settings, **experiments: dict) -> Settings:
    found = {name: ExperimentSettings.model_validate(exp) for name, exp in experiments.items()}
    return settings.model_copy(update={"experiments": found})


@pytest.fixture(scope="module")
def exp_client(published: tuple[Settings, str]):
    with serving(with_experiments(published[0], **{"home-v2": EXPERIMENT})) as c:
        yield c


@pytest.fixture(scope="module")
def snapshot(published: tuple[Settings, str]) -> tuple[SnapshotModel, list[str]]:
    """The served snapshot's model and its users."""
    with open_store(published[0]) as store:
        return SnapshotModel.load(store, published[1]), [str(u) for u in store.read_array(published[1], USER_IDS)]


@pytest.fixture(scope="module")
def users(snapshot: tuple[SnapshotModel, list[str]]) -> list[str]:
    return snapshot[1]


def arm_of(user: str) -> str | None:
    return assign_arm(ExperimentSettings.model_validate(EXPERIMENT), user)


def test_every_list_says_its_arm_in_body_and_headers_on_both_paths(exp_client: TestClient, users) -> None:
    seen = set()
    for user in users[:60]:
        for params in ({"k": 5}, {"k": "05"}):  # the fast path, and FastAPI's (a non-canonical k)
            response = exp_client.get(f"/v1/users/{user}/recommendations", params=params)
            assert response.status_code == 200
            body, arm = response.json(), arm_of(user)
            assert body["arm"] == arm and body["experiment"] == ("home-v2" if arm else None)
            assert response.headers.get("x-lambdarec-arm") == arm
            assert response.headers.get("x-lambdarec-experiment") == body["experiment"]
            seen.add(arm)
    assert seen == {"control", "diverse", None}  # traffic 0.8: some users are outside


def test_the_popular_only_control_serves_unseen_popular_items(published, exp_client: TestClient, snapshot):
    model, users = snapshot
    user = next(u for u in users if arm_of(u) == "control")
    body = exp_client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()
    assert {item["source"] for item in body["items"]} == {"popular"}
    with open_store(published[0]) as store:
        history = set(model.item_ids[store.read_user(model.version, user).history].tolist())
    assert history
    ids = [item["item_id"] for item in body["items"]]
    expected = [str(model.item_ids[i]) for i in model.popular_order if str(model.item_ids[i]) not in history][:10]
    assert ids == expected


def test_an_arm_ranks_as_serving_with_its_overrides_would(published, exp_client: TestClient, users) -> None:
    settings = published[0]
    overridden = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"mmr_lambda": 0.4, "weight_trending": 0.0})}
    )
    treated = [u for u in users if arm_of(u) == "diverse"][:10]
    outside = [u for u in users if arm_of(u) is None][:5]
    differs = 0
    with serving(settings) as plain, serving(overridden) as direct:
        for user in treated:
            got = exp_client.get(f"/v1/users/{user}/recommendations").json()["items"]
            want = direct.get(f"/v1/users/{user}/recommendations").json()["items"]
            base = plain.get(f"/v1/users/{user}/recommendations").json()["items"]
            assert [i["item_id"] for i in got] == [i["item_id"] for i in want]
            differs += base != got
        for user in outside:  # outside the traffic: the base settings' list, no arm
            got = exp_client.get(f"/v1/users/{user}/recommendations").json()
            assert got["items"] == plain.get(f"/v1/users/{user}/recommendations").json()["items"]
            assert got["arm"] is None
    assert differs


def test_batch_lists_each_carry_their_arm_and_anonymous_sessions_are_sticky(exp_client: TestClient, users) -> None:
    chosen = users[:8]
    body = exp_client.post("/v1/recommendations", json={"users": chosen, "k": 3}).json()
    assert [r["arm"] for r in body["results"]] == [arm_of(u) for u in chosen]
    arms = set()
    for n in range(40):
        session = f"s-{n}"
        response = exp_client.post("/v1/recommendations", json={"items": [], "session_id": session, "k": 3})
        result = response.json()["results"][0]
        assert result["arm"] == arm_of(session) == response.headers.get("x-lambdarec-arm")
        again = exp_client.post("/v1/recommendations", json={"session_id": session, "k": 3}).json()["results"][0]
        assert again["arm"] == result["arm"]
        arms.add(result["arm"])
    assert arms == {"control", "diverse", None}
    no_session = exp_client.post("/v1/recommendations", json={"k": 3})
    assert no_session.json()["results"][0]["arm"] is None and "x-lambdarec-arm" not in no_session.headers


def test_assignments_list_every_experiment(published, users) -> None:
    settings = with_experiments(
        published[0],
        **{"home-v2": EXPERIMENT, "later": {"salt": "l", "arms": [{"name": "a"}, {"name": "b"}]}},
    )
    with serving(settings) as client:
        for user in users[:30]:
            body = client.get(f"/v1/users/{user}/assignments").json()
            assert body["user_id"] == user
            first, later = body["assignments"]
            assert first["experiment"] == "home-v2" and first["arm"] == arm_of(user) and first["unit"] == "user"
            assert first["served"] == (first["arm"] is not None)
            assert later["served"] == (first["arm"] is None)  # at most one experiment shapes the lists
            served = client.get(f"/v1/users/{user}/recommendations").json()
            expected = first if first["served"] else later
            assert (served["experiment"], served["arm"]) == (expected["experiment"], expected["arm"])
        assert client.get("/v1/users/%20/assignments").status_code == 422
        metrics = client.get("/metrics").text
        assert 'lambdarec_experiment_lists_total{arm="diverse",experiment="home-v2"}' in metrics


def test_an_arm_pinned_to_an_older_snapshot_serves_it(tmp_path: Path, log_file: Path, users) -> None:
    settings = make_settings(tmp_path)
    old = publish(settings, log_file)
    new = publish(settings, log_file)
    pinned = {"salt": "p", "arms": [{"name": "current"}, {"name": "old", "snapshot": old}]}
    gone = {"salt": "p", "arms": [{"name": "current"}, {"name": "old", "snapshot": "19990101T000000000Z-gone"}]}
    exp = ExperimentSettings.model_validate(pinned)
    for experiment, want_old in ((pinned, old), (gone, new)):
        with serving(with_experiments(settings, pin=experiment)) as client:
            for user in users[:20]:
                body = client.get(f"/v1/users/{user}/recommendations").json()
                arm = assign_arm(exp, user)
                assert body["arm"] == arm
                assert body["snapshot"] == (want_old if arm == "old" else new)


def test_the_recommend_command_ranks_in_the_users_arm(published, exp_client: TestClient, users, tmp_path: Path):
    from typer.testing import CliRunner

    from lambdarec.cli import app

    settings = published[0]
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[store]\nurl = "{settings.store.url}"\n[log]\nurl = "{settings.log.url}"\n[experiments.home-v2]\n'
        'salt = "home-v2"\ntraffic = 0.8\n[[experiments.home-v2.arms]]\nname = "control"\npopular_only = true\n'
        '[[experiments.home-v2.arms]]\nname = "diverse"\nserving = { mmr_lambda = 0.4, weight_trending = 0.0 }\n'
    )
    for arm in ("control", "diverse", None):
        user = next(u for u in users if arm_of(u) == arm)
        result = CliRunner().invoke(app, ["recommend", user, "--k", "6", "--json", "--config", str(config)])
        assert result.exit_code == 0, result.output
        cli = json.loads(result.stdout)
        http = exp_client.get(f"/v1/users/{user}/recommendations", params={"k": 6}).json()
        assert cli["arm"] == arm and [i["item_id"] for i in cli["items"]] == [i["item_id"] for i in http["items"]]
