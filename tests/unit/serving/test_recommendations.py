"""GET /v1/users/{id}/recommendations and POST /v1/recommendations on a published snapshot."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from lambdarec.model.rows import FreshUser
from lambdarec.model.snapshot import USER_IDS, SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import open_store
from tests.unit.serving.conftest import serving

SOURCES = {"batch", "speed", "session", "trending", "popular"}


@pytest.fixture(scope="module")
def users(published: tuple[Settings, str]) -> list[str]:
    """The snapshot's users (serving itself never loads them)."""
    settings, version = published
    with open_store(settings) as store:
        return [str(u) for u in store.read_array(version, USER_IDS)]


@pytest.fixture(scope="module")
def model(published: tuple[Settings, str]) -> SnapshotModel:
    settings, version = published
    with open_store(settings) as store:
        return SnapshotModel.load(store, version)


def get(client: TestClient, user: str, **params: object) -> dict:
    response = client.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_known_user_gets_batch_items_with_provenance(client: TestClient, published, model, users) -> None:
    user = str(users[0])
    body = get(client, user, k=7)
    assert body["user_id"] == user
    assert body["snapshot"] == published[1]
    assert body["degraded"] is False
    assert body["fresh_state_age_s"] is None
    assert len(body["items"]) == 7
    assert {i["source"] for i in body["items"]} <= SOURCES
    assert body["items"][0]["source"] == "batch"
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["reason"] is None for i in body["items"])


def test_explain_gives_every_item_a_reason_and_parts(client: TestClient, model, users) -> None:
    body = get(client, str(users[1]), k=5, explain="true", session_items="i1,i2")
    for item in body["items"]:
        assert item["reason"]
        assert set(item["components"]) == {"cf", "session", "trending"}


def test_session_items_re_rank_and_are_not_recommended_back(client: TestClient, model, users) -> None:
    user = str(users[2])
    plain = get(client, user, k=10)
    session = [plain["items"][0]["item_id"], "i3"]
    body = get(client, user, k=10, session_items=",".join(session))
    ids = [i["item_id"] for i in body["items"]]
    assert not set(ids) & set(session)
    assert ids != [i["item_id"] for i in plain["items"]]


def test_unknown_user_without_session_gets_popular_not_an_error(client: TestClient, model) -> None:
    body = get(client, "nobody-at-all", k=5)
    assert body["user_id"] == "nobody-at-all"
    assert len(body["items"]) == 5
    assert {i["source"] for i in body["items"]} <= {"trending", "popular"}
    popular = [str(model.item_ids[i]) for i in model.popular_order[:10]]
    assert [i["item_id"] for i in body["items"]] == popular[:5]
    page2 = get(client, "nobody-at-all", k=5, offset=5)
    assert [i["item_id"] for i in page2["items"]] == popular[5:10]  # pages of the fallback never overlap


def test_unknown_user_with_session_gets_session_neighbours(client: TestClient, model) -> None:
    seed = "i5"
    body = get(client, "new-visitor", k=5, session_items=seed, explain="true")
    assert body["items"][0]["source"] == "session"
    neighbours = {str(model.item_ids[j]) for j in model.neighbours[model.item_index[seed]] if j >= 0}
    assert body["items"][0]["item_id"] in neighbours
    assert body["items"][0]["reason"] == f"because you viewed {seed}"


def test_offset_pages_stably_and_exclude_removes(client: TestClient, model, users) -> None:
    user = str(users[3])
    whole = [i["item_id"] for i in get(client, user, k=10)["items"]]
    page2 = [i["item_id"] for i in get(client, user, k=5, offset=5)["items"]]
    assert page2 == whole[5:10]
    without = [i["item_id"] for i in get(client, user, k=10, exclude=whole[0])["items"]]
    assert whole[0] not in without and without[0] == whole[1]


@pytest.mark.parametrize(
    ("params", "name", "words"),
    [
        ({"k": 0}, "k", "between 1 and 100 (serving.max_k)"),
        ({"k": 101}, "k", "between 1 and 100 (serving.max_k)"),
        ({"k": "ten"}, "k", "between 1 and 100"),
        ({"offset": -1}, "offset", "between 0 and 1000 (serving.max_offset)"),
        ({"explain": "perhaps"}, "explain", "boolean"),
        ({"session_items": ",".join(f"i{n}" for n in range(101))}, "session_items", "serving.max_request_items"),
    ],
)
def test_bad_query_values_are_422_naming_the_parameter(client: TestClient, params, name, words) -> None:
    response = client.get("/v1/users/u1/recommendations", params=params)
    assert response.status_code == 422
    body = response.json()
    assert f"query parameter '{name}'" in body["message"]
    assert words in body["message"]
    assert body["errors"][0]["loc"] == ["query", name]


def test_fresh_state_on_an_older_basis_is_rebased_in_process(published, model) -> None:
    """A vector stamped with another snapshot is re-solved against the served one, so it counts (source speed)."""
    settings, _ = published
    cutoff = model.cutoff_s
    liked = [str(model.item_ids[j]) for j in model.neighbours[model.item_index["i7"], :4]]
    state = FreshUser(
        user_id="rebased-user",
        events=[(i, cutoff + 60 + n, 4.0) for n, i in enumerate(liked)],
        recent=[(i, cutoff + 60 + n) for n, i in enumerate(liked)],
        vector=[9.0, 9.0],
        basis="an-older-snapshot",
        updated_at=cutoff + 64,
    )
    with open_store(settings) as store:
        store.write_fresh_users([state])
    with serving(settings) as client:
        body = get(client, "rebased-user", k=10, explain="true")
        metrics = client.get("/metrics").text
    assert body["fresh_state_age_s"] > 0
    ids = [i["item_id"] for i in body["items"]]
    assert not set(ids) & set(liked)  # touched after the cut-off: seen
    assert "speed" in {i["source"] for i in body["items"]}
    assert all(math.isfinite(i["score"]) for i in body["items"])  # recent items decayed to 0 must not give NaN
    assert 'lambdarec_serving_lists_total{kind="personalised"} 1.0' in metrics


def test_batch_request_gives_one_list_per_user_in_order(client: TestClient, model, users) -> None:
    users = [users[4], "stranger", users[5]]
    response = client.post("/v1/recommendations", json={"users": users, "k": 3, "items": ["i2"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["user_id"] for r in body["results"]] == users
    assert all(len(r["items"]) == 3 for r in body["results"])
    assert all("i2" not in {i["item_id"] for i in r["items"]} for r in body["results"])
    assert body["results"][0]["items"] == get(client, users[0], k=3, session_items="i2")["items"]


def test_anonymous_basket_gets_one_list(client: TestClient) -> None:
    response = client.post("/v1/recommendations", json={"items": ["i4", "i9"], "k": 4})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["user_id"] is None
    assert len(result["items"]) == 4
    assert result["items"][0]["source"] == "session"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"users": [f"u{n}" for n in range(1001)]}, "body field 'users'"),
        ({"users": ["u1"], "k": 0}, "body field 'k': must be an integer between 1 and 100"),
        ({"users": ["u1"], "colour": "red"}, "body field 'colour'"),
        ({"users": "u1"}, "body field 'users'"),
    ],
)
def test_bad_batch_bodies_are_422_naming_the_field(client: TestClient, body, words) -> None:
    response = client.post("/v1/recommendations", json=body)
    assert response.status_code == 422
    assert words in response.json()["message"]
