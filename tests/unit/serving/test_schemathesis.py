"""Property-based: schemathesis generates requests from the OpenAPI document; none may get a 5xx.

Runs over ASGI (no network) with an admin key, so the protected operations are exercised past the key check.
Each operation gets valid (positive) and invalid (negative) inputs. Hypothesis drives each operation's strategy
directly (`as_strategy`): schemathesis's lazy pytest fixture loader does not run under pytest 9.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

# schemathesis loads its OpenAPI module on first use, and pytest's assertion rewriter parses it then. Parsed in the
# middle of the run, it failed once with CPython 3.11's spurious "AST constructor recursion depth mismatch"
# (cpython gh-106905, pytest #10763); loaded here, it is parsed at collection time, before any test has run.
from schemathesis.specs.openapi import schemas as _openapi_schemas  # noqa: F401

from serving_layer.app import create_app
from tests.fuzzing import examples
from tests.unit.serving.conftest import ADMIN_KEY, make_settings, publish, wait_for
from tests.unit.serving.test_openapi import ROUTES

# Per operation and mode: 200 per operation with inputs (positive + negative) in CI, about a minute and a half on
# two cores; `make fuzz` multiplies them (LAMBDAREC_TEST_FUZZ_SCALE).
EXAMPLES = examples(100)
pytestmark = pytest.mark.fuzz


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, log_file: Path) -> Iterator[schemathesis.BaseSchema]:
    cfg = make_settings(tmp_path_factory.mktemp("schemathesis"))
    publish(cfg, log_file)
    app = create_app(cfg)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    wait_for(lambda: app.state.service.models.model is not None, "the snapshot to load")
    yield schema


def test_the_fuzzed_operations_are_every_documented_one(api_schema: schemathesis.BaseSchema) -> None:
    documented = {(op.ok().method.lower(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(ROUTES)


NO_INPUT = {"/livez", "/readyz", "/metrics"}  # nothing to make invalid: negative generation is unsatisfiable
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in sorted(ROUTES)] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in sorted(ROUTES) if p not in NO_INPUT
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda v: getattr(v, "value", v))
def test_no_input_gets_a_server_error(api_schema, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method.upper()]

    calls = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        calls.append(1)
        case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, checks=[not_a_server_error])

    check()
    if path not in NO_INPUT:  # an operation without inputs has a handful of distinct requests, all tried
        assert len(calls) >= EXAMPLES, f"only {len(calls)} examples ran"
