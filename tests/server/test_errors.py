"""Error envelopes and readable validation messages."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from augury.server.errors import APIError, from_value_error, validation_message
from augury.server.openai.protocol import ChatCompletionRequest, CompletionRequest


def first_message(model: type[Any], body: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as err:
        model.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in err.value.errors()]
    return validation_message(errors)


def test_messages_name_field_value_and_rule() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert first_message(ChatCompletionRequest, {**base, "top_p": 1.5}) == (
        "top_p: must be <= 1.0, got 1.5",
        "top_p",
    )
    assert first_message(ChatCompletionRequest, {"messages": []})[1] == "model"
    msg, param = first_message(ChatCompletionRequest, {**base, "stop": [1]})
    assert param == "stop" and "got" in msg
    msg, param = first_message(CompletionRequest, {"model": "m", "prompt": {"a": 1}})
    assert param == "prompt" and "must be" in msg
    msg, _ = first_message(ChatCompletionRequest, {**base, "temperature": float("nan")})
    assert "finite" in msg


def test_json_errors_and_root_errors() -> None:
    json_error = [{"type": "json_invalid", "loc": ("body", 3), "ctx": {"error": "Expecting ','"}}]
    assert validation_message(json_error) == (
        "the request body is not valid JSON: Expecting ','",
        None,
    )
    root = [{"type": "model_attributes_type", "loc": ("body",), "input": [1]}]
    assert validation_message(root)[0].startswith("the request body must be a JSON object")


def test_value_errors_become_400_with_param() -> None:
    err = from_value_error(ValueError("temperature must be in [0.0, 100.0], got 200"))
    assert err.status == 400 and err.param == "temperature"
    assert from_value_error(ValueError("logit_bias[7] must be ...")).param == "logit_bias"
    assert from_value_error(ValueError("The prompt is bad")).param is None


def test_envelope_shape() -> None:
    err = APIError(429, "slow down", code="rate_limit_exceeded", headers={"Retry-After": "3"})
    assert err.body() == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert err.response().headers["retry-after"] == "3"
    assert APIError(500, "x").type == "server_error"
