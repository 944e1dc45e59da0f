"""Property-based fuzzing of the whole API from its own OpenAPI schema: no generated request,
valid or not, may produce a 5xx, and answers must match the documented schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from augury.server.app import create_app
from augury.server.config import RequestLimits, ServerConfig
from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import LiveServer, start_server

# Small caps keep every generated request to a few engine steps.
FUZZ_LIMITS = RequestLimits(max_tokens=4, max_n=2, max_prompts=2, max_messages=8)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(engine: LocalEngineClient) -> Iterator[LiveServer]:
    # No predictive models or batch folder from the checkout: this schema is the OpenAI API.
    config = ServerConfig(limits=FUZZ_LIMITS, model_repository=None, batch_dir=None)
    server = start_server(create_app(config, engines=[engine]))
    yield server
    server.stop()


def within_caps(body: dict[str, Any], model: str) -> None:
    """Pull a schema-valid body inside this server's caps, so most cases reach the engine."""
    body["model"] = model
    for field in ("max_tokens", "max_completion_tokens", "n"):
        if isinstance(body.get(field), int):
            body[field] = min(body[field], 2)
    for field, most in (("stop", 4), ("messages", 8), ("prompt", 2)):
        if isinstance(body.get(field), list):
            body[field] = body[field][:most]
    body.pop("suffix", None)


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_input_yields_a_server_error(
    fuzz_server: LiveServer, engine: LocalEngineClient, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_server.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions"}
    for operation in operations:
        if operation.method != "post" and mode is GenerationMode.NEGATIVE:
            continue  # GET routes take no input worth corrupting

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=30 if operation.method == "post" else 3,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
                within_caps(case.body, engine.model_id)
            response = case.call(base_url=fuzz_server.url, timeout=60)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            # A POST without a body (e.g. /v1/batches/{id}/cancel) has no input to corrupt.
            assert mode is GenerationMode.NEGATIVE, operation.path
