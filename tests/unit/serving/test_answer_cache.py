"""The answer cache: a repeat of a user's request with nothing changed is a lookup (with a current
``fresh_state_age_s``), and no change of any input is ever answered from it: a fresh event for the user, a new
snapshot, a catalog change, a trending refresh, an erasure, the cache's time limit. Lists that write impressions,
and lists served degraded, never come from it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lambdarec.catalog.rules import RequestFilters
from lambdarec.model.rows import FRESH_FORMAT, FreshUser, ShownItems, TrendingItem
from lambdarec.model.snapshot import USER_IDS
from lambdarec.store import open_store
from serving_layer.answer_cache import ENTRY_BYTES, AnswerCache
from serving_layer.recommend import DEGRADED_HEADER, RecommendQuery
from tests.unit.serving.conftest import admin, ingest, make_settings, publish, serving, wait_for
from tests.unit.serving.test_degraded import Switchable

QUIET = {"trending_refresh_s": 3600.0}  # no trending refresh during a test unless it asks: each one invalidates


def cache_count(client: TestClient, result: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'lambdarec_serving_answer_cache_total{{result="{result}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def user_of(settings: Any, version: str, n: int = 0) -> str:
    with open_store(settings) as store:
        return str(store.read_array(version, USER_IDS)[n])


def ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def get(client: TestClient, user: str, **params: Any) -> dict:
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def quiet_store(tmp_path: Path, log_file: Path):
    settings = make_settings(tmp_path, **QUIET)
    return settings, publish(settings, log_file)


def test_a_repeat_with_nothing_changed_is_a_lookup_with_a_current_age(quiet_store) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    with open_store(settings) as store:
        then = time.time() - 50
        store.write_fresh_users([FreshUser(user_id=user, recent=[("i3", then)], updated_at=then)])
    with serving(settings) as client:
        first = get(client, user, session_items="i7")
        hits = cache_count(client, "hit")
        time.sleep(0.05)
        second = get(client, user, session_items="i7")
        assert cache_count(client, "hit") == hits + 1
        assert second["items"] == first["items"]
        assert second["fresh_state_age_s"] > first["fresh_state_age_s"] >= 50  # recomputed on the hit, not cached
        assert {k: v for k, v in second.items() if k != "fresh_state_age_s"} == {
            k: v for k, v in first.items() if k != "fresh_state_age_s"
        }
        other = get(client, user, session_items="i8")  # other parameters: another answer
        assert cache_count(client, "hit") == hits + 1 and other["items"] != first["items"]
        metrics = client.get("/metrics").text
    # a hit is counted as a served list like any other
    assert 'lambdarec_serving_lists_total{kind="personalised"} 3.0' in metrics


def test_a_fresh_event_of_the_user_is_served_at_once(quiet_store) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    with serving(settings) as client, open_store(settings) as store:
        before = get(client, user)
        assert ids(get(client, user)) == ids(before)  # cached
        top = ids(before)[0]
        now = time.time()
        store.write_fresh_users(
            [FreshUser(user_id=user, hidden={top: now}, updated_at=now, format=FRESH_FORMAT)]
        )  # the user hid the top item: it must go from the next list on
        after = get(client, user)
    assert top not in ids(after)
    assert after["fresh_state_age_s"] is not None


def rows_count(client: TestClient, result: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'lambdarec_serving_fresh_state_rows_total{{result="{result}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("cache_mb", [32.0, 0.0])
def test_an_unchanged_fresh_state_is_decoded_once_and_a_rewritten_one_served_at_once(tmp_path, log_file, cache_mb):
    """Serving keeps users' fresh states decoded by their stored bytes (``serving.fresh_state_cache_mb``): each
    request still reads the row, and a row the speed layer rewrote is decoded and served at once; off, every read
    decodes and the counts stay 0."""
    settings = make_settings(tmp_path, fresh_state_cache_mb=cache_mb, **QUIET)
    user = user_of(settings, publish(settings, log_file))
    now = time.time()
    with open_store(settings) as store:
        store.write_fresh_users([FreshUser(user_id=user, recent=[("i3", now)], updated_at=now)])
    with serving(settings) as client, open_store(settings) as store:
        first = get(client, user, session_items="i7")
        assert first["fresh_state_age_s"] is not None
        get(client, user, session_items="i8")  # another list, nothing kept for it: the same state read again
        kept = 1.0 if cache_mb else 0.0
        assert (rows_count(client, "kept"), rows_count(client, "decoded")) == (kept, kept)
        top = ids(first)[0]
        store.write_fresh_users([FreshUser(user_id=user, recent=[("i3", now)], hidden={top: now + 1},
                                           updated_at=now + 1, format=FRESH_FORMAT)])  # fmt: skip
        after = get(client, user, session_items="i7")
        assert top not in ids(after)
        assert (rows_count(client, "kept"), rows_count(client, "decoded")) == (kept, 2 * kept)


def test_a_new_snapshot_is_served_once_swapped_in(quiet_store, log_file: Path) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    with serving(settings) as client:
        assert get(client, user)["snapshot"] == get(client, user)["snapshot"] == version
        newer = publish(settings, log_file)
        service = client.app.state.service  # type: ignore[attr-defined]
        wait_for(lambda: service.models.model.version == newer, "the new snapshot to be served")
        assert get(client, user)["snapshot"] == newer


def test_a_catalog_change_is_served_once_polled(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path, catalog_poll_s=0.1, **QUIET)
    version = publish(settings, log_file)
    user = user_of(settings, version)
    with serving(settings) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        wait_for(lambda: service.catalog.loaded, "the catalog's first read")
        before = get(client, user)
        top = ids(get(client, user))[0]
        hits = cache_count(client, "hit")
        assert hits >= 1
        response = client.post("/v1/items", json=[{"item_id": top, "available": False}], headers=ingest())
        assert response.status_code == 200, response.text
        wait_for(
            lambda: not service.catalog.view_for(service.served_model(), time.time()).allows(top, None),
            "serving to poll the withdrawn item",
        )
        after = get(client, user)
    assert top in ids(before) and top not in ids(after)


def test_a_trending_refresh_is_served_at_once(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path, trending_refresh_s=0.1, weight_trending=50.0)
    publish(settings, log_file)
    with serving(settings) as client:
        before = get(client, "never-seen-user")  # no state: trending, then popular
        rising = next(f"i{n}" for n in range(199, 0, -1) if f"i{n}" not in ids(before))
        with open_store(settings) as store:
            store.write_trending([TrendingItem(item_id=rising, count=1e6, as_of=time.time())])
        service = client.app.state.service  # type: ignore[attr-defined]

        def refreshed() -> bool:
            model = service.served_model()
            scores = service.trending.scores_for(model)
            return scores is not None and scores.scores[model.item_index[rising]] > 0

        wait_for(refreshed, "serving to refresh trending")
        assert ids(get(client, "never-seen-user"))[0] == rising


def test_the_time_limit_bounds_a_cached_answer(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path, answer_cache_ttl_s=1.0, **QUIET)
    version = publish(settings, log_file)
    user = user_of(settings, version)
    with serving(settings) as client:
        get(client, user)
        get(client, user)
        hits = cache_count(client, "hit")
        assert hits == 1  # within the limit: answered from the cache
        time.sleep(1.2)
        get(client, user)
        assert cache_count(client, "hit") == hits


def test_answers_ranked_together_expire_spread_over_half_the_limit_not_at_once() -> None:
    """A burst of users ranked together must not all be ranked again in the same moment (their rankings would
    queue): each answer lives a random 50-100% of ``answer_cache_ttl_s``, never longer."""
    cache = AnswerCache(max_bytes=32 << 20, ttl_s=10.0)
    body = b'{"user_id":"u%d","snapshot":"v1","fresh_state_age_s":null,"degraded":false}'
    start = time.monotonic()
    for n in range(200):
        cache.put(RecommendQuery(f"u{n}", 10), (object(),), None, "v1", body % n, None, [], False)
    lives = [kept.expires_at - start for kept in cache._data.values()]
    assert min(lives) >= 5.0 and max(lives) <= 10.0 + (time.monotonic() - start)
    assert max(lives) - min(lives) > 2.5  # spread over the half of the limit, not one moment


def test_an_erased_user_is_never_answered_from_the_cache(quiet_store) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    with serving(settings) as client:
        assert {i["source"] for i in get(client, user)["items"]} & {"batch"}
        get(client, user)
        response = client.delete(f"/v1/users/{user}", headers=admin())
        assert response.status_code == 200, response.text
        assert "batch" not in {i["source"] for i in get(client, user)["items"]}


def test_lists_that_write_impressions_are_never_cached(quiet_store) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    with serving(settings) as client:
        stamped = [get(client, user, impressions="true")["impression_id"] for _ in range(3)]
        assert cache_count(client, "hit") == 0
    assert None not in stamped and len(set(stamped)) == 3


def test_a_store_outage_is_never_hidden_by_a_cached_answer(quiet_store) -> None:
    settings, version = quiet_store
    user = user_of(settings, version)
    store = Switchable(settings)
    try:
        with serving(settings, store=store) as client:  # type: ignore[arg-type]
            healthy = get(client, user)
            assert get(client, user)["items"] == healthy["items"] and cache_count(client, "hit") == 1
            store.broken = True
            response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
            assert response.headers[DEGRADED_HEADER] == "store-unavailable"
            assert response.json()["degraded"] is True
    finally:
        store.store.close()


def test_a_size_of_zero_turns_the_cache_off(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path, answer_cache_mb=0, **QUIET)
    version = publish(settings, log_file)
    user = user_of(settings, version)
    with serving(settings) as client:
        assert get(client, user)["items"] == get(client, user)["items"]
        assert cache_count(client, "hit") == 0


def test_a_trending_refresh_that_changed_nothing_keeps_the_answers(tmp_path: Path, log_file: Path) -> None:
    settings = make_settings(tmp_path, trending_refresh_s=0.05)
    version = publish(settings, log_file)
    user = user_of(settings, version)
    with open_store(settings) as store:
        store.write_trending([TrendingItem(item_id="i5", count=3.0, as_of=time.time())])
    with serving(settings) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        # the rows are kept before they are scored: wait for the scores of the row written above (the snapshot's
        # load scores the rows in hand, none before the first refresh: all zero), or the first list is ranked
        # without them and the next refresh, which reads the row, rightly changes its answer
        wait_for(lambda: _scored(service), "the first trending scores of the row written")
        first = get(client, user)
        time.sleep(0.3)  # several refreshes, each reading the same rows
        hits = cache_count(client, "hit")
        assert get(client, user)["items"] == first["items"]
        assert cache_count(client, "hit") == hits + 1


def _scored(service) -> bool:  # type: ignore[no-untyped-def]
    scores = service.trending.scores_for(service.models.model)
    return scores is not None and bool(scores.scores.any())


def test_the_cache_holds_at_most_its_memory_bound_least_recently_used_first() -> None:
    cache = AnswerCache(max_bytes=3 * (1000 + ENTRY_BYTES + 100), ttl_s=60.0)
    inputs = (object(),)

    def body(user: str) -> bytes:
        return b'{"user_id":"%s","snapshot":"v1","fresh_state_age_s":null,"degraded":false,"items":"%s"}' % (
            user.encode(),
            b"x" * 900,
        )

    queries = [RecommendQuery(f"u{n}", 10) for n in range(5)]
    for q in queries[:3]:
        cache.put(q, inputs, None, "v1", body(q.user_id or ""), None, [], False)
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes
    assert cache.get(queries[0], inputs, None) is not None  # now the most recently used
    cache.put(queries[3], inputs, None, "v1", body("u3"), None, [], False)
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    assert cache.get(queries[1], inputs, None) is None  # the least recently used went
    assert cache.get(queries[0], inputs, None).body(None) == body("u0")  # type: ignore[union-attr]


def test_long_session_lists_count_against_the_bound() -> None:
    """A key naming 100 long item ids holds ~25 KB: the bound counts it, so such keys cannot outgrow the memory."""
    cache = AnswerCache(max_bytes=200_000, ttl_s=60.0)
    body = b'{"user_id":"u","snapshot":"v1","fresh_state_age_s":null,"degraded":false}'
    for n in range(50):
        session = tuple(f"{n:03d}-" + "x" * 250 for _ in range(100))
        cache.put(RecommendQuery("u", 10, 0, session), (object(),), None, "v1", body, None, [], False)
    assert cache.bytes <= cache.max_bytes
    assert len(cache) <= 200_000 // (100 * 250)


def test_long_category_filters_count_against_the_bound() -> None:
    """Filters are part of the key too: a request naming many long categories is counted as what it holds."""
    cache = AnswerCache(max_bytes=200_000, ttl_s=60.0)
    body = b'{"user_id":"u","snapshot":"v1","fresh_state_age_s":null,"degraded":false}'
    for n in range(50):
        wanted = RequestFilters(categories=frozenset(f"{n:03d}-{k:03d}-" + "x" * 250 for k in range(100)))
        cache.put(RecommendQuery("u", 10, filters=wanted), (object(),), None, "v1", body, None, [], False)
    assert cache.bytes <= cache.max_bytes
    assert len(cache) <= 200_000 // (100 * 250)


def test_new_impressions_in_the_users_own_impressions_row_are_served_at_once(tmp_path: Path, log_file: Path) -> None:
    # with speed.feedback.own_consumer the impressions live in a row of their own, joined per request: a change
    # there (the impressions consumer's write) must reach the next identical request, not a cached answer
    base = make_settings(tmp_path, **QUIET)
    settings = base.model_copy(update={"speed": base.speed.model_copy(update={
        "feedback": base.speed.feedback.model_copy(update={"own_consumer": True})})})  # fmt: skip
    version = publish(settings, log_file)
    user = user_of(settings, version)
    with serving(settings) as client, open_store(settings) as store:
        before = get(client, user, explain="true")
        hits = cache_count(client, "hit")
        assert ids(get(client, user, explain="true")) == ids(before) and cache_count(client, "hit") == hits + 1
        top = ids(before)[0]
        now = time.time()
        store.write_shown([ShownItems(user_id=user, shown={top: [now - 60 + n for n in range(6)]}, updated_at=now)])
        after = {i["item_id"]: i for i in get(client, user, explain="true")["items"]}
    assert cache_count(client, "hit") == hits + 1  # the changed row was not answered from the cache
    assert top not in after or after[top]["components"]["fatigue"] < 1.0
