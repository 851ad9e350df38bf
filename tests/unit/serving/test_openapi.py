"""The OpenAPI document lists every route with its response schemas, examples and bounds."""

from __future__ import annotations

from fastapi.testclient import TestClient

ROUTES = {
    ("get", "/v1/users/{user_id}/recommendations"): {"200", "422", "503"},
    ("post", "/v1/recommendations"): {"200", "413", "415", "422", "503"},
    ("get", "/v1/items/{item_id}/similar"): {"200", "404", "422", "503"},
    ("get", "/v1/popular"): {"200", "422", "503"},
    ("post", "/v1/events"): {"202", "401", "403", "413", "415", "422", "503"},
    ("post", "/v1/items"): {"200", "401", "403", "413", "415", "422", "503"},
    ("get", "/v1/items/{item_id}"): {"200", "404", "422", "503"},
    ("get", "/v1/snapshots"): {"200", "401", "403", "503"},
    ("post", "/v1/snapshots/{version}/activate"): {"200", "401", "403", "404", "409", "422", "503"},
    ("delete", "/v1/users/{user_id}"): {"200", "401", "403", "422", "503"},
    ("get", "/livez"): {"200"},
    ("get", "/readyz"): {"200", "503"},
    ("get", "/metrics"): {"200"},
    ("get", "/v1/users/{user_id}/assignments"): {"200", "422"},
}


def test_every_route_is_documented_with_its_responses(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert found == set(ROUTES)
    for (method, path), codes in ROUTES.items():
        responses = doc["paths"][path][method]["responses"]
        assert set(responses) == codes, (method, path)
        for code, response in responses.items():
            assert response["content"], (method, path, code)
            schema = next(iter(response["content"].values()))["schema"]
            assert schema, (method, path, code)
            if code.startswith(("4", "5")) and path != "/readyz":
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, code)


def test_bounds_from_settings_and_examples_are_in_the_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]}
    assert params["k"]["schema"]["minimum"] == 1 and params["k"]["schema"]["maximum"] == 100
    assert set(params) == {"user_id", "k", "offset", "session_items", "exclude", "explain", "impressions",
                           "categories", "exclude_categories", "filter"}  # fmt: skip
    schemas = doc["components"]["schemas"]
    assert schemas["Recommendations"]["examples"][0]["items"]
    assert schemas["RecommendationsBatchRequest"]["properties"]["users"]["maxItems"] == 1000
    assert set(schemas["RecommendedItem"]["properties"]["source"]["enum"]) == {
        "batch",
        "speed",
        "session",
        "trending",
        "popular",
    }
    events = doc["paths"]["/v1/events"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])
