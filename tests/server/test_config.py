"""Server settings: API key sources and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from augury.server.config import (
    API_KEYS_ENV,
    RequestLimits,
    ServerConfig,
    collect_api_keys,
    key_name,
)


def test_api_keys_from_flags_env_and_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nalice sk-alice-000000\n\nsk-anon-2222222\n")
    env = {API_KEYS_ENV: "sk-env-1111111, sk-env-3333333"}
    found = collect_api_keys(["sk-flag-000000"], keys_file, env)
    assert found["alice"] == "sk-alice-000000"
    assert found[key_name("sk-anon-2222222")] == "sk-anon-2222222"
    assert set(found.values()) >= {"sk-flag-000000", "sk-env-1111111", "sk-env-3333333"}
    assert key_name("sk-flag-000000").startswith("key-") and "sk-" not in key_name("sk-x")


def test_api_keys_rejects_short_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        collect_api_keys(["short"], None, {})
    bad = tmp_path / "keys"
    bad.write_text("a b c\n")
    with pytest.raises(ValueError, match="keys:1"):
        collect_api_keys([], bad, {})
    assert collect_api_keys([], None, {}) == {}


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"port": 0}, "port"), ({"request_timeout": 0}, "request_timeout"),
     ({"ssl_certfile": "c.pem"}, "TLS"), ({"grace_period": -1}, "grace_period")],
)  # fmt: skip
def test_server_config_validation(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ServerConfig(**fields)  # type: ignore[arg-type]


def test_limits_validation() -> None:
    with pytest.raises(ValueError, match="max_n"):
        RequestLimits(max_n=0)
    with pytest.raises(ValueError, match="max_top_logprobs"):
        RequestLimits(max_top_logprobs=21)
