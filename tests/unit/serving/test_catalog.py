"""The catalog over HTTP: upserts with a per-item report, reads, the rules and the request filters on every
endpoint (within serving.catalog_poll_s), the 422 of a bad filter, and explain naming the rule that moved an item.
The property test: for any catalog, global rules and request filters, no endpoint ever returns an ineligible item,
and k items come back whenever k eligible ones exist."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambdarec.catalog.rules import RequestFilters
from lambdarec.eventlog import AppendOutcomeUnknownError, EventLogUnavailableError
from lambdarec.model.snapshot import USER_IDS
from serving_layer.catalog_params import filters_of
from tests.unit.catalog.strategies import CATEGORIES, FILTERS, catalogs, rules
from tests.unit.serving.conftest import ingest, make_settings, publish, serving, wait_for

POLL_S = 0.1


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory, log_file: Path) -> Iterator[TestClient]:
    s = make_settings(tmp_path_factory.mktemp("catalog"), catalog_poll_s=POLL_S)
    publish(s, log_file)
    with serving(s) as client:
        wait_for(lambda: client.app.state.service.catalog.loaded, "the catalog's first read")
        yield client


def model_of(client: TestClient):
    return client.app.state.service.models.model


def served_allows(client: TestClient, item_id: str, filters: RequestFilters | None = None) -> bool:
    """Whether serving's catalog view, as requests see it now, allows ``item_id``."""
    service = client.app.state.service
    return service.catalog.view_for(service.served_model(), time.time()).allows(item_id, filters)


def users_of(client: TestClient) -> list[str]:
    """Five of the snapshot's users (serving itself never loads them)."""
    service = client.app.state.service
    return [str(u) for u in service.store().read_array(model_of(client).version, USER_IDS)[:5].tolist()]


def ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def post_items(client: TestClient, body: object) -> dict:
    response = client.post("/v1/items", json=body, headers=ingest())
    assert response.status_code == 200, response.text
    return response.json()


def test_upserts_need_the_ingest_key_and_report_each_item(app_client: TestClient) -> None:
    assert app_client.post("/v1/items", json=[{"item_id": "x1"}]).status_code == 401
    report = post_items(app_client, [{"item_id": "x1", "categories": ["c"]}, {"item_id": "x2", "price": 3}])
    assert (report["accepted"], report["rejected"]) == (1, 1)
    assert report["rejections"][0]["index"] == 1 and "unknown field 'price'" in report["rejections"][0]["reason"]
    got = app_client.get("/v1/items/x1").json()
    assert (got["item_id"], got["available"], got["categories"], got["expires_at"]) == ("x1", True, ["c"], None)
    assert app_client.get("/v1/items/nope").status_code == 404
    assert post_items(app_client, {"item_id": "x1", "available": False})["accepted"] == 1  # one object is fine
    assert app_client.get("/v1/items/x1").json()["categories"] == ["c"]  # left out: kept
    wait_for(lambda: "lambdarec_serving_catalog_items 1.0" in app_client.get("/metrics").text, "the catalog gauge")
    assert "lambdarec_serving_catalog_read_age_seconds" in app_client.get("/metrics").text


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[[[[1]]]]", "nested 4 deep"),
        (b"{", "not JSON"),
        (b"3", "not JSON int"),
        (b"[" + b"{}," * 1000 + b"{}]", "max_batch"),
    ],
)
def test_a_bad_body_is_a_422_naming_the_problem(app_client: TestClient, body: bytes, words: str) -> None:
    headers = {**ingest(), "Content-Type": "application/json"}
    response = app_client.post("/v1/items", content=body, headers=headers)
    assert response.status_code == 422 and words in response.json()["message"], response.text


def test_an_unavailable_item_leaves_every_endpoint_within_the_poll_and_lists_stay_full(app_client: TestClient) -> None:
    user = users_of(app_client)[0]
    before = ids(app_client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json())
    popular = ids(app_client.get("/v1/popular", params={"k": 5}).json())
    gone = [before[0], before[3], popular[0]]
    similar_to = model_of(app_client).item_ids[0]
    post_items(app_client, [{"item_id": i, "available": False} for i in gone])
    wait_for(lambda: not any(served_allows(app_client, i) for i in gone), "serving to poll the withdrawn items")
    lists = [
        ids(app_client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).json()),  # the fast path
        ids(app_client.get(f"/v1/users/{user}/recommendations", params={"k": 10, "offset": "00"}).json()),  # FastAPI
        ids(app_client.get("/v1/popular", params={"k": 5}).json()),
        ids(app_client.get(f"/v1/items/{similar_to}/similar", params={"k": 10}).json()),
        ids(app_client.post("/v1/recommendations", json={"users": [user], "items": [before[5]]}).json()["results"][0]),
        ids(app_client.post("/v1/recommendations", json={"items": [before[5]], "k": 10}).json()["results"][0]),
    ]  # fmt: skip
    for found in lists:
        assert not set(found) & set(gone), found
    assert [len(x) for x in lists] == [10, 10, 5, 10, 10, 10]
    assert lists[0][:2] == [before[1], before[2]]  # the others keep their order
    post_items(app_client, [{"item_id": i, "available": True} for i in gone])
    wait_for(lambda: all(served_allows(app_client, i) for i in gone), "serving to poll the items back")


def test_request_filters_and_explain(app_client: TestClient) -> None:
    user = users_of(app_client)[1]
    item_ids = [str(i) for i in model_of(app_client).item_ids.tolist()]
    shoes = item_ids[::3]
    post_items(app_client, [{"item_id": i, "categories": ["shoes"], "attributes": {"price": n % 100}}
                            for n, i in enumerate(shoes)])  # fmt: skip
    shoe = RequestFilters(categories=frozenset({"shoes"}))
    wait_for(lambda: all(served_allows(app_client, i, shoe) for i in shoes), "serving to poll the shoes")
    params = {"k": 8, "categories": "shoes", "filter": "price<50", "explain": "true"}
    body = app_client.get(f"/v1/users/{user}/recommendations", params=params).json()
    assert len(body["items"]) == 8
    for item in body["items"]:
        stored = app_client.get(f"/v1/items/{item['item_id']}").json()
        assert "shoes" in stored["categories"] and stored["attributes"]["price"] < 50
    assert any(k.startswith("rule:") for i in body["items"] for k in i["components"])
    without = ids(
        app_client.get(f"/v1/users/{user}/recommendations", params={"k": 8, "exclude_categories": "shoes"}).json()
    )
    assert not set(without) & set(shoes) and len(without) == 8
    post_items(app_client, [{"item_id": i, "categories": [], "attributes": {}} for i in shoes])


@pytest.mark.parametrize("where", ["get", "post", "popular"])
def test_a_bad_filter_is_a_422_pointing_at_the_character(app_client: TestClient, where: str) -> None:
    user = users_of(app_client)[0]
    if where == "get":
        response = app_client.get(f"/v1/users/{user}/recommendations", params={"filter": "brand~acme"})
    elif where == "post":
        response = app_client.post("/v1/recommendations", json={"users": [user], "filter": "brand~acme"})
    else:
        response = app_client.get("/v1/popular", params={"filter": "brand~acme"})
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "'filter'" in message and "expected an operator" in message and "character 6" in message
    assert "brand~acme\n     ^" in message


@pytest.fixture(scope="module")
def frozen_client(tmp_path_factory: pytest.TempPathFactory, log_file: Path) -> Iterator[TestClient]:
    """Serving whose catalog is read once: the property test sets the catalog and the rules in memory itself."""
    s = make_settings(tmp_path_factory.mktemp("catalog-frozen"), catalog_poll_s=3600.0)
    publish(s, log_file)
    with serving(s) as client:
        wait_for(lambda: client.app.state.service.catalog.loaded, "the catalog's first read")
        yield client


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    catalog=catalogs(200),
    rules_=rules(),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2),
    exclude=st.lists(st.sampled_from(CATEGORIES), max_size=1),
    filter_=st.sampled_from(FILTERS),
    k=st.integers(1, 15),
)
def test_no_endpoint_ever_returns_an_ineligible_item(
    frozen_client, catalog, rules_, categories, exclude, filter_, k
) -> None:
    service = frozen_client.app.state.service
    model = model_of(frozen_client)
    names = [str(i) for i in model.item_ids.tolist()]
    catalog = {
        names[int(key[1:])]: msgspec.structs.replace(it, item_id=names[int(key[1:])]) for key, it in catalog.items()
    }
    service.catalog.rules = rules_
    service.catalog.apply(catalog, True, time.time(), model)
    view = service.catalog.view_for(model, time.time())
    params = {"k": k, "categories": ",".join(categories), "exclude_categories": ",".join(exclude), "filter": filter_}
    params = {key: v for key, v in params.items() if v != ""}
    filters = filters_of(params.get("categories"), params.get("exclude_categories"), params.get("filter"),
                         service.settings.serving) or RequestFilters()  # fmt: skip
    allowed = {i for i in names if view.allows(i, filters)}
    user = users_of(frozen_client)[2]
    row = service.store().read_user(model.version, user)
    seen = {names[i] for i in row.history.tolist()} if row is not None else set()
    post = frozen_client.post("/v1/recommendations", json={"items": [names[1]], **_body(params)})
    answers = {
        "user": ids(frozen_client.get(f"/v1/users/{user}/recommendations", params=params).json()),
        "anonymous": ids(post.json()["results"][0]),
        "popular": ids(frozen_client.get("/v1/popular", params={**params, "window": "all"}).json()),
        "similar": ids(frozen_client.get(f"/v1/items/{names[1]}/similar", params=params).json()),
    }  # fmt: skip
    for where, found in answers.items():
        assert set(found) <= allowed, (where, set(found) - allowed)
    assert len(answers["user"]) == min(k, len(allowed - seen))
    assert len(answers["anonymous"]) == min(k, len(allowed - {names[1]}))
    assert len(answers["similar"]) == min(k, len(allowed - {names[1]}))


def _body(params: dict) -> dict:
    out: dict = {"k": params["k"]}
    for key in ("categories", "exclude_categories"):
        if key in params:
            out[key] = params[key].split(",")
    if "filter" in params:
        out["filter"] = params["filter"]
    return out


class _FailingLog:
    def __init__(self, error: Exception):
        self.error = error

    def append(self, events, keys=None):  # type: ignore[no-untyped-def]
        raise self.error


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (EventLogUnavailableError("broker down"), "nothing was written"),
        (AppendOutcomeUnknownError("no ack"), "may or may not hold them"),
    ],
)
def test_a_log_that_fails_is_a_503_and_the_store_is_not_written(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch, error: Exception, words: str
) -> None:
    service = app_client.app.state.service
    monkeypatch.setattr(service, "event_log", lambda: _FailingLog(error))
    response = app_client.post("/v1/items", json=[{"item_id": "never-written"}], headers=ingest())
    assert response.status_code == 503 and words in response.json()["message"], response.text
    assert response.headers["Retry-After"] == "1"
    assert app_client.get("/v1/items/never-written").status_code == 404
