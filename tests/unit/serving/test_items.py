"""GET /v1/items/{id}/similar and GET /v1/popular, answered from the model in memory."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lambdarec.model.snapshot import SnapshotModel
from lambdarec.settings import Settings
from lambdarec.store import open_store


@pytest.fixture(scope="module")
def model(published: tuple[Settings, str]) -> SnapshotModel:
    with open_store(published[0]) as store:
        return SnapshotModel.load(store, published[1])


def test_similar_items_are_the_precomputed_neighbours(client: TestClient, model: SnapshotModel) -> None:
    response = client.get("/v1/items/i3/similar", params={"k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["item_id"] == "i3" and body["snapshot"] == model.version
    row = model.neighbours[model.item_index["i3"]]
    assert [i["item_id"] for i in body["items"]] == [str(model.item_ids[j]) for j in row[:5]]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_beyond_the_precomputed_neighbours_uses_exact_cosine(client: TestClient, model) -> None:
    k = model.neighbours.shape[1] + 10
    body = client.get("/v1/items/i3/similar", params={"k": k}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == k and "i3" not in ids and len(set(ids)) == k
    unit = model.unit_factors
    want = np.argsort(-(unit @ unit[model.item_index["i3"]]), kind="stable")[1 : k + 1]
    assert ids[:5] == [str(model.item_ids[j]) for j in want[:5]]


def test_unknown_item_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/items/no-such-item/similar")
    assert response.status_code == 404
    assert "'no-such-item' is not in snapshot" in response.json()["message"]


@pytest.mark.parametrize("window", ["recent", "all"])
def test_popular_is_ordered_by_the_window_counts(client: TestClient, model, window: str) -> None:
    body = client.get("/v1/popular", params={"k": 6, "window": window}).json()
    assert body["window"] == window
    counts = model.popularity_recent if window == "recent" else model.popularity_all
    order = model.recent_order if window == "recent" else model.popular_order
    assert [i["item_id"] for i in body["items"]] == [str(model.item_ids[j]) for j in order[:6]]
    assert [i["score"] for i in body["items"]] == [float(counts[j]) for j in order[:6]]


def test_popular_rejects_an_unknown_window_and_k_out_of_bounds(client: TestClient) -> None:
    bad = client.get("/v1/popular", params={"window": "weekly"})
    assert bad.status_code == 422 and "query parameter 'window'" in bad.json()["message"]
    too_many = client.get("/v1/popular", params={"k": 1000})
    assert too_many.status_code == 422 and "between 1 and 100" in too_many.json()["message"]
