"""``lambdarec.client`` against a real ``lambdarec serve`` (uvicorn) process: every method, the API key, retries
on 5xx but never on 4xx, and the last-known-good popular list once the service is gone."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_layer.synth import SynthSpec, synthesize
from lambdarec.client import ApiError, AsyncClient, Client, RetryPolicy, Unavailable
from lambdarec.experiments import assign_arm
from lambdarec.model.snapshot import USER_IDS
from lambdarec.settings import ExperimentSettings, Settings
from lambdarec.store import open_store
from tests.integration.serve_process import serve_process
from tests.unit.serving.conftest import INGEST_KEY, make_settings, publish

pytestmark = [pytest.mark.integration]

EXPERIMENT = {"salt": "client-test", "arms": [{"name": "control", "popular_only": True}, {"name": "treat"}]}
EXPERIMENT_TOML = (
    '[experiments.home]\nsalt = "client-test"\n[[experiments.home.arms]]\nname = "control"\npopular_only = true\n'
    '[[experiments.home.arms]]\nname = "treat"\n'
)
FAST = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05, seed=1)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[str]]:
    root = tmp_path_factory.mktemp("client")
    log_file = root / "log.parquet"
    synthesize(SynthSpec(users=300, items=200, events=12_000, seed=5)).events.write_parquet(log_file)
    settings = make_settings(root)
    version = publish(settings, log_file)
    with open_store(settings) as store:
        users = [str(u) for u in store.read_array(version, USER_IDS)]
    return settings, users


@pytest.fixture(scope="module")
def server(published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_process(published[0], tmp_path_factory.mktemp("server"), extra_toml=EXPERIMENT_TOML) as base:
        yield base


def requests_counted(client: Client, route: str, status: int) -> float:
    text = client.http.get("/metrics").text
    pattern = rf'lambdarec_serving_requests_total\{{method="GET",route="{re.escape(route)}",status="{status}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_every_method_against_a_real_server(server: str, published) -> None:
    _, users = published
    user = users[0]
    with Client(server, api_key=INGEST_KEY, retry=FAST) as client:
        page = client.recommend(user, k=5, exclude=["i0"])
        assert len(page.items) == 5 and page.user_id == user and not page.local_fallback
        assert page.arm == assign_arm(ExperimentSettings.model_validate(EXPERIMENT), user)
        assert page.attribution() == {"experiment": "home", "arm": page.arm}
        assigned = client.assignments(user)
        assert [(a.experiment, a.arm, a.served) for a in assigned.assignments] == [("home", page.arm, True)]
        many = client.recommend_many(users=users[:3], k=4)
        assert [r.user_id for r in many.results] == users[:3] and all(len(r.items) == 4 for r in many.results)
        anonymous = client.recommend_many(items=[page.items[0].item_id], session_id="s-9", k=3, impressions=True)
        assert anonymous.results[0].user_id is None and anonymous.results[0].impression_id
        similar = client.similar(page.items[0].item_id, k=3)
        assert similar.item_id == page.items[0].item_id and len(similar.items) == 3
        popular = client.popular(k=5)
        assert len(popular.items) == 5 and popular.window == "recent"
        sent = client.send_events(
            [
                {"event_id": "c-1", "user_id": user, "item_id": page.items[0].item_id, "event_type": "click",
                 "timestamp": time.time(), "context": page.attribution()},
                {"event_id": "c-2", "user_id": user, "event_type": "teleport", "item_id": "i1", "timestamp": 1},
            ]
        )  # fmt: skip
        assert (sent.accepted, sent.rejected) == (1, 1) and "teleport" in sent.rejections[0].reason
        # the catalog's request filters: no item has a brand yet, so an attribute filter leaves nothing to show
        assert client.recommend(user, k=5, filter="brand=acme").items == []
        assert client.recommend_many(users=[user], k=5, filter="brand=acme").results[0].items == []
        assert len(client.recommend(user, k=5, exclude_categories=["none-such"]).items) == 5
        with pytest.raises(ApiError) as bad_filter:
            client.recommend(user, filter="price<=")
        assert bad_filter.value.status == 422 and "filter" in bad_filter.value.detail
    with Client(server, retry=FAST) as anonymous_client:
        with pytest.raises(ApiError) as no_key:
            anonymous_client.send_events([{"event_id": "x"}])
        assert no_key.value.status == 401


def test_4xx_is_never_retried_and_names_the_problem(server: str) -> None:
    with Client(server, retry=FAST) as client:
        route = "/v1/users/{user_id}/recommendations"
        before = requests_counted(client, route, 422)
        with pytest.raises(ApiError) as bad:
            client.recommend("u1", k=0)
        assert bad.value.status == 422 and "k" in bad.value.detail
        assert requests_counted(client, route, 422) == before + 1
        with pytest.raises(ApiError) as unknown:
            client.similar("no-such-item")
        assert unknown.value.status == 404 and "no-such-item" in unknown.value.detail


def test_5xx_is_retried_then_served_from_the_last_popular_list(published, tmp_path: Path) -> None:
    """A server with no snapshot answers 503: the client retries every attempt, then raises (nothing known yet)."""
    empty = make_settings(tmp_path)
    with serve_process(empty, tmp_path, ready_path="/livez") as base, Client(base, retry=FAST) as client:
        route = "/v1/users/{user_id}/recommendations"
        before = requests_counted(client, route, 503)
        with pytest.raises(ApiError) as unavailable:
            client.recommend("u1")
        assert unavailable.value.status == 503
        assert requests_counted(client, route, 503) == before + FAST.attempts


def test_an_unreachable_service_gets_the_last_known_popular_list(published, tmp_path: Path) -> None:
    settings, users = published
    with serve_process(settings, tmp_path) as base:
        client = Client(base, retry=FAST, timeout_s=2.0)
        live = client.recommend(users[1], k=5)  # the first success also fetches the popular list
        popular = client.popular(k=100)
        assert not live.local_fallback
    # the server is gone now
    page = client.recommend(users[1], k=5, exclude=[popular.items[0].item_id])
    assert page.local_fallback and page.degraded and page.degraded_reason == "service-unreachable"
    assert [i.item_id for i in page.items] == [i.item_id for i in popular.items[1:6]]
    batch = client.recommend_many(users=users[:2], k=3)
    assert batch.local_fallback and [r.user_id for r in batch.results] == users[:2]
    with pytest.raises(Unavailable):  # the kept popular list knows no catalog: it cannot honour filters
        client.recommend(users[1], k=5, categories=["shoes"])
    with pytest.raises(Unavailable) as gone:
        client.similar("i1")
    assert gone.value.attempts == FAST.attempts
    strict = Client(base, retry=FAST, fallback=False)
    with pytest.raises(Unavailable):
        strict.recommend(users[1])
    client.close()
    strict.close()


def test_async_client_against_a_real_server(server: str, published) -> None:
    _, users = published

    async def run() -> None:
        async with AsyncClient(server, api_key=INGEST_KEY, retry=FAST) as client:
            pages = await asyncio.gather(*(client.recommend(u, k=3) for u in users[:5]))
            assert [p.user_id for p in pages] == users[:5] and all(len(p.items) == 3 for p in pages)
            assert (await client.assignments(users[0])).assignments[0].experiment == "home"
            assert len((await client.popular(k=2)).items) == 2
            assert len((await client.similar(pages[0].items[0].item_id, k=2)).items) == 2
            assert len((await client.recommend_many(users=users[:2], k=2)).results) == 2
            result = await client.send_events([{"event_id": "a-1", "user_id": users[0], "item_id": "i1",
                                                "event_type": "view", "timestamp": time.time()}])  # fmt: skip
            assert result.accepted == 1
            with pytest.raises(ApiError):
                await client.recommend(users[0], k=100000)

    asyncio.run(run())
