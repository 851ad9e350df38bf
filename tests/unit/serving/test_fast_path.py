"""The hot GET of a user's list: answered by ``FastPath`` when plain, by FastAPI otherwise, the same either way;
its msgspec body byte for byte pydantic's; a snapshot's batch rows read once per user."""

from __future__ import annotations

import math
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient

from lambdarec.model.rows import FreshUser, UserState
from lambdarec.model.snapshot import USER_IDS
from lambdarec.rank.merge import Ranked
from lambdarec.settings import Settings
from lambdarec.store import open_store
from serving_layer import fast_path
from serving_layer.app import create_app
from serving_layer.fast_path import FastPath
from serving_layer.recommend import RecommendQuery, shape
from serving_layer.user_list import encode_body
from tests.unit.serving.conftest import make_settings, publish, serving, wait_for


@pytest.fixture(scope="module")
def users(published: tuple[Settings, str]) -> list[str]:
    settings, version = published
    with open_store(settings) as store:
        return [str(u) for u in store.read_array(version, USER_IDS)]


# each pair: the plain spelling FastPath answers, and a spelling of the same query that only FastAPI reads
PAIRS = [
    ("k=5", "k=05"),
    ("k=5", "k=%2B5"),
    ("k=7&explain=true", "k=7&explain=True"),
    ("k=3&offset=4&explain=1", "k=3&offset=04&explain=TRUE"),
    ("session_items=i3,i9&exclude=i1", "session_items=i3,i9&exclude=i1&exclude=i1"),
    ("", "k=10&k=10"),
]


@pytest.mark.parametrize(("plain", "other"), PAIRS)
def test_fast_and_fastapi_answers_are_the_same_bytes(client: TestClient, users, plain: str, other: str) -> None:
    fast_path = FastPath(None, client.app.state.service, client.app.state.service.settings.serving)  # type: ignore[arg-type, attr-defined]
    assert fast_path.query(users[0], plain.encode()) is not None
    assert fast_path.query(users[0], other.encode()) is None
    for user in (users[0], users[1], "never-seen-user"):
        fast = client.get(f"/v1/users/{user}/recommendations?{plain}")
        slow = client.get(f"/v1/users/{user}/recommendations?{other}")
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        assert [(k, v) for k, v in fast.headers.items() if k != "date"] == [
            (k, v) for k, v in slow.headers.items() if k != "date"
        ]


def test_fast_answers_are_counted_under_the_route_template(client: TestClient, users) -> None:
    client.get(f"/v1/users/{users[0]}/recommendations?k=2")
    metrics = client.get("/metrics").text
    assert 'route="/v1/users/{user_id}/recommendations"' in metrics
    assert 'route="unmatched"' not in metrics


@pytest.mark.parametrize(
    "query",
    ["k=0", "k=101", "k=ten", "offset=-1", "offset=1001", "explain=perhaps", "k=", "k=1e1"],
)
def test_what_fastapi_refuses_still_gets_its_422(client: TestClient, users, query: str) -> None:
    response = client.get(f"/v1/users/{users[0]}/recommendations?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][0] == "query"


def test_odd_user_ids_go_to_fastapi(client: TestClient) -> None:
    fast_path = FastPath(None, client.app.state.service, client.app.state.service.settings.serving)  # type: ignore[arg-type, attr-defined]
    scope = {"type": "http", "method": "GET", "path": "/v1/users/ u1/recommendations", "root_path": ""}
    assert fast_path.user_id(scope) is None
    assert fast_path.user_id({**scope, "path": "/v1/users/u1/recommendations"}) == "u1"
    assert fast_path.user_id({**scope, "method": "HEAD", "path": "/v1/users/u1/recommendations"}) is None
    assert client.get("/v1/users/%20u1/recommendations").status_code == 422  # FastAPI's pattern check
    assert client.head("/v1/users/u1/recommendations").status_code == 405


def _ranked(score: float, cf: float) -> Ranked:
    return Ranked("i1", score, "batch", "because", {"cf": cf, "session": 0.25, "trending": -0.0})


@pytest.mark.parametrize(
    ("score", "cf"),
    [(1.3125, 0.5), (1e-7, 3.0e-5), (float("nan"), float("inf")), (2.5e16, 1.0), (0.5, -1e20), (123456.789, 1e15)],
)
def test_msgspec_body_is_pydantics_byte_for_byte(client: TestClient, score: float, cf: float) -> None:
    model = client.app.state.service.models.model  # type: ignore[attr-defined]
    fresh = FreshUser(user_id="u1", updated_at=1_700_000_000.0, basis=model.version)
    for state, degraded in ((UserState(), False), (UserState(None, fresh, "bad checksum"), False), (UserState(), True)):
        query = RecommendQuery("u1", k=3, offset=1, explain=True)
        ranked = [_ranked(score, cf), _ranked(0.1, 0.2)]
        now = 1_700_000_123.5
        expected = shape(model, query, state, ranked, now, degraded).model_dump_json().encode()
        assert encode_body(model, query, state, ranked, now, degraded) == expected
        assert math.isfinite(float(expected.split(b'"score":')[1].split(b",")[0]))


class CountingStore:
    """The real SQLite store, counting the batch-row reads that reach it."""

    def __init__(self, store):  # type: ignore[no-untyped-def]
        self._store, self.row_reads = store, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._store, name)

    def read_user(self, version, user_id):  # type: ignore[no-untyped-def]
        self.row_reads += 1
        return self._store.read_user(version, user_id)


def test_a_snapshots_batch_row_is_read_once_per_user_and_again_after_a_flip(fresh_store, log_file) -> None:
    settings, version = fresh_store
    with open_store(settings) as store:
        user = str(store.read_array(version, USER_IDS)[0])
        counting = CountingStore(store)
        with serving(settings, store=counting) as client:  # type: ignore[arg-type]
            first = client.get(f"/v1/users/{user}/recommendations?k=5").json()
            for _ in range(3):
                assert client.get(f"/v1/users/{user}/recommendations?k=5").json()["items"] == first["items"]
            assert counting.row_reads == 1
            assert first["items"][0]["source"] == "batch"
            newer = publish(settings, log_file)
            service = client.app.state.service  # type: ignore[attr-defined]
            reads = counting.row_reads
            wait_for(lambda: service.models.model.version == newer, "the new snapshot to be served")
            again = client.get(f"/v1/users/{user}/recommendations?k=5").json()
            assert again["snapshot"] == newer
            assert counting.row_reads == reads + 1


def test_a_plain_request_over_the_url_limit_gets_the_414_of_every_other(tmp_path, log_file) -> None:
    """The fast path is the outermost layer: a URL it would answer still gets ``serving.max_url_bytes``' 414."""
    settings = make_settings(tmp_path, max_url_bytes=1024)
    publish(settings, log_file)
    with serving(settings) as client:
        under = client.get("/v1/users/u1/recommendations", params={"session_items": ",".join(["i1"] * 100)})
        assert under.status_code == 200
        over = client.get("/v1/users/u1/recommendations", params={"session_items": ",".join(["item-00010"] * 100)})
        assert over.status_code == 414, over.text
        assert "serving.max_url_bytes" in over.json()["message"]
        metrics = client.get("/metrics").text
    assert 'status="414"' in metrics and 'route="unmatched"' in metrics


def test_a_failure_on_the_fast_path_is_the_500_of_every_other_and_counted(published, monkeypatch) -> None:
    async def broken(service, query):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug on the hot path")

    monkeypatch.setattr("serving_layer.fast_path.user_list", broken)
    app = create_app(published[0])
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: app.state.service.models.model is not None, "a snapshot to load")
        response = client.get("/v1/users/u1/recommendations")
        assert response.status_code == 500
        assert response.json()["message"] == "internal error; the server log has the details"
        metrics = client.get("/metrics").text
    assert (
        'lambdarec_serving_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="500"} 1.0'
        in metrics
    )
    assert 'lambdarec_serving_errors_total{exception="RuntimeError"} 1.0' in metrics


def test_the_hot_get_is_answered_before_fastapis_own_layers(published) -> None:
    """No FastAPI layer runs for a plain list request (their cost per request is what the path saves); every other
    request still goes through them."""
    app = create_app(published[0])
    through_fastapi: list[str] = []
    with TestClient(app) as client:
        wait_for(lambda: app.state.service.models.model is not None, "a snapshot to load")
        stack = app.middleware_stack  # built at start-up: Starlette's error middleware, FastAPI's, ours, routing
        assert stack is not None

        async def counting(scope, receive, send):  # type: ignore[no-untyped-def]
            through_fastapi.append(scope["path"])
            await stack(scope, receive, send)

        app.middleware_stack = counting  # type: ignore[assignment]
        for user in ("u1", "never-seen-user"):
            assert client.get(f"/v1/users/{user}/recommendations?k=3").status_code == 200
        assert through_fastapi == []
        assert client.get("/v1/users/u1/recommendations?k=03").status_code == 200  # a spelling only FastAPI reads
        assert client.get("/livez").status_code == 200
    assert through_fastapi == ["/v1/users/u1/recommendations", "/livez"]


@pytest.mark.parametrize(
    "text",
    ["", "k=10", "k=10&session_items=i1,i2", "a", "a=", "=b", "&&k=1&", "a=b=c", "k=10&k=11", "k=1;k=2",
     "k=%31&session_items=i%2C2", "session_items=a+b", "x=%zz", "explain&k=3"],
)  # fmt: skip
def test_a_query_string_reads_as_parse_qsl_reads_it(text: str) -> None:
    """The fast path splits a query with nothing to unquote itself: the same pairs as ``parse_qsl`` (blank
    values kept, ``;`` not a separator), and ``parse_qsl``'s own for one with ``%`` or ``+``."""
    assert fast_path._pairs(text) == parse_qsl(text, keep_blank_values=True)
