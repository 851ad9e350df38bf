"""Every client method against the served OpenAPI document: its route exists, every query parameter and body
field it sends is declared there, and its response type has exactly the fields of the response schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

from lambdarec.client import ENDPOINTS, endpoints
from lambdarec.client.types import CLIENT_ONLY_FIELDS
from serving_layer.app import create_app
from tests.unit.serving.conftest import make_settings

FILTERS = endpoints.Filters(("shoes",), ("sale",), "brand=acme;price<=50")
CALLS = {
    "recommend": endpoints.recommend("u1", 5, 2, ["i1"], ["i2"], True, True, FILTERS),
    "recommend_many": endpoints.recommend_many(["u1"], ["i1"], ["i2"], 5, 1, True, "s1", True, FILTERS),
    "similar": endpoints.similar("i1", 5),
    "popular": endpoints.popular(5, "all"),
    "send_events": endpoints.send_events([{"event_id": "e1"}]),
    "send_items": endpoints.send_items([{"item_id": "i1"}]),
    "assignments": endpoints.assignments("u1"),
}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(make_settings(Path(tmp_path_factory.mktemp("openapi"))))
    return TestClient(app).get("/openapi.json").json()


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_client_method_has_a_call_here() -> None:
    assert set(CALLS) == set(ENDPOINTS)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_method_matches_the_served_document(document: dict[str, Any], name: str) -> None:
    method, template, returns = ENDPOINTS[name]
    operation = document["paths"].get(template, {}).get(method.lower())
    assert operation is not None, f"{name}: {method} {template} is not in the served OpenAPI document"
    call = CALLS[name]
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert set(call.params) <= declared, (name, set(call.params) - declared)
    path_params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert path_params == {part[1:-1] for part in template.split("/") if part.startswith("{")}
    if call.body is not None:
        body = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
        if "anyOf" in body:  # one object or an array of them: the client sends an array
            body = next(resolve(document, s) for s in body["anyOf"] if s.get("type") == "array")
        if body.get("type") == "array":
            sent = {key for element in call.body for key in element}
            item = resolve(document, body["items"])
            assert sent <= set(item["properties"]), (name, sent - set(item["properties"]))
        else:
            assert set(call.body) <= set(body["properties"]), (name, set(call.body) - set(body["properties"]))
    ok = next(code for code in operation["responses"] if code.startswith("2"))
    schema = resolve(document, operation["responses"][ok]["content"]["application/json"]["schema"])
    check_struct(document, returns, schema, name)


def check_struct(doc: dict[str, Any], struct: type, schema: dict[str, Any], where: str) -> None:
    """The struct's fields are the schema's properties (client-only ones aside); nested structs likewise."""
    fields = {f.name: f for f in msgspec.structs.fields(struct)}
    own = set(fields) - CLIENT_ONLY_FIELDS
    assert own == set(schema["properties"]), (where, own ^ set(schema["properties"]))
    required = set(schema.get("required", []))
    optional = {name for name, f in fields.items() if f.required is False}
    assert not (required & optional - {"degraded_reason"}), (where, required & optional)
    for name, f in fields.items():
        prop = schema["properties"].get(name)
        nested = _struct_of(f.type)
        if prop is None or nested is None:
            continue
        inner = prop.get("items", prop)
        inner = next((s for s in inner.get("anyOf", [inner]) if "$ref" in s or "properties" in s), inner)
        check_struct(doc, nested, resolve(doc, inner), f"{where}.{name}")


def _struct_of(kind: Any) -> type | None:
    for arg in (kind, *getattr(kind, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
            return arg
    return None
