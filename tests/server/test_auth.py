"""API keys: every route but /health needs one; keys compared by digest; names not keys."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from augury.server.auth import ApiKeys, bearer_token
from augury.server.engine_client import LocalEngineClient
from tests.server.conftest import AppFactory

pytestmark = pytest.mark.anyio

KEYS = {"alice": "sk-alice-000000", "bob": "sk-bob-11111111"}


def route_calls(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the app (included routers flattened), path
    parameters filled in."""
    calls = []
    for route in iter_route_contexts(routes):
        assert route.path is not None, route
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        calls += [(method, path) for method in sorted(route.methods or {"GET"})]
    return calls


async def test_every_route_but_the_probes_needs_a_key(make_client: AppFactory) -> None:
    client = make_client(api_keys=KEYS)
    calls = route_calls(client.app.routes)  # type: ignore[attr-defined]
    paths = {path for _, path in calls}
    assert {"/health", "/ready", "/metrics", "/v1/models", "/v1/chat/completions"} <= paths
    assert "/openapi.json" in paths and "/docs" in paths
    for method, path in calls:
        missing = await client.request(method, path)
        wrong = await client.request(method, path, headers={"Authorization": "Bearer sk-nope-123"})
        good = await client.request(
            method, path, headers={"Authorization": f"Bearer {KEYS['bob']}"}
        )
        if path in ("/health", "/ready"):  # probes: answered whatever the key
            assert missing.status_code == wrong.status_code == good.status_code, path
            assert good.status_code in (200, 503), path
            continue
        for r in (missing, wrong):
            assert r.status_code == 401, (method, path)
            if method != "HEAD":
                assert r.json()["error"]["code"] == "invalid_api_key"
            assert r.headers["www-authenticate"] == "Bearer"
        assert good.status_code != 401, (method, path, good.text)


async def test_unknown_routes_need_a_key_too(make_client: AppFactory) -> None:
    client = make_client(api_keys=KEYS)
    assert (await client.get("/v1/secret")).status_code == 401
    r = await client.get("/v1/secret", headers={"x-api-key": KEYS["alice"]})
    assert r.status_code == 404


async def test_without_keys_everything_is_open(
    make_client: AppFactory, engine: LocalEngineClient
) -> None:
    client = make_client()
    assert (await client.get("/v1/models")).status_code == 200


def test_identify_by_digest() -> None:
    keys = ApiKeys(KEYS)
    assert keys.enabled and not ApiKeys({}).enabled
    assert keys.identify("sk-alice-000000") == "alice"
    assert keys.identify("sk-alice-00000") is None
    assert keys.identify("") is None
    assert keys.identify("sk-ålice-\udcff") is None  # odd input never raises


def test_bearer_token_parsing() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
        return {"type": "http", "headers": list(headers)}

    assert bearer_token(scope((b"authorization", b"Bearer abc"))) == "abc"
    assert bearer_token(scope((b"authorization", b"bearer   abc "))) == "abc"
    assert bearer_token(scope((b"authorization", b"Basic abc"))) is None
    assert bearer_token(scope((b"x-api-key", b"k"))) == "k"
    assert bearer_token(scope()) is None
