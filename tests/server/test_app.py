"""The app factory's transport options: TLS (self-signed, made here) and CORS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import trustme

from augury.server.app import create_app
from augury.server.config import ServerConfig
from tests.server.conftest import AppFactory, LiveServer, start_server
from tests.server.fakes import FakeEngine

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder: Path = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    app = create_app(ServerConfig(), engines=[FakeEngine()])
    server = start_server(
        app,
        scheme="https",
        ssl_certfile=str(folder / "cert.pem"),
        ssl_keyfile=str(folder / "key.pem"),
    )
    yield server
    server.stop()


def test_tls_with_a_trusted_certificate(tls_server: LiveServer, ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        httpx.Client(verify=context) as http,
        openai.OpenAI(
            base_url=tls_server.url + "/v1", api_key="unused", http_client=http, max_retries=0
        ) as client,
    ):
        assert [m.id for m in client.models.list().data] == ["fake"]
        r = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "hi"}]
        )
        assert r.choices[0].message.content == "xxx"


def test_tls_refuses_untrusted_clients_and_plain_http(tls_server: LiveServer) -> None:
    untrusted = openai.OpenAI(base_url=tls_server.url + "/v1", api_key="k", max_retries=0)
    with untrusted, pytest.raises(openai.APIConnectionError):
        untrusted.models.list()
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_server.url.replace("https", "http") + "/health", timeout=5)


async def test_cors_is_off_by_default(make_client: AppFactory) -> None:
    client = make_client(engines=[FakeEngine()])
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    r = await client.options("/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/health", headers={"Origin": "https://ui.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_for_configured_origins(make_client: AppFactory) -> None:
    keys = {"k": "sk-cors-0000000"}
    client = make_client(
        engines=[FakeEngine()], cors_origins=("https://ui.example",), api_keys=keys
    )
    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    r = await client.options("/v1/chat/completions", headers=preflight)
    assert r.status_code == 200  # preflights carry no key and need none
    assert r.headers["access-control-allow-origin"] == "https://ui.example"
    r = await client.get("/v1/models", headers={"Origin": "https://ui.example"})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://ui.example"
    evil = await client.options(
        "/v1/models", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert evil.headers.get("access-control-allow-origin") != "https://evil.example"
