"""The OpenAI error envelope and the exception handlers that answer with it.

Every error leaves the server as `{"error": {"message", "type", "param", "code"}}`. Validation
errors are rewritten into one sentence naming the field, the value and what is allowed, so no
pydantic wording or class names reach clients.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error with its HTTP status, raised anywhere below a handler."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "api_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready (logged as 499)."""


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_value_error(exc: ValueError, param: str | None = None) -> APIError:
    """A 400 from an engine or SamplingParams ValueError; `param` defaults to the field the
    message starts with ('temperature must be in ...' -> 'temperature')."""
    message = str(exc)
    if param is None:
        head = message.split(" ", 1)[0].split(":", 1)[0].split("[", 1)[0]
        param = head if head.isidentifier() and head.islower() else None
    return APIError(400, message, param=param)


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One readable sentence (and the offending parameter) for pydantic's error list."""
    if not errors:
        return "the request is invalid", None
    err = errors[0]
    loc = _field_path(err.get("loc", ()))
    kind = str(err.get("type", ""))
    if kind == "json_invalid":
        error = (err.get("ctx") or {}).get("error", "malformed")
        return f"the request body is not valid JSON: {error}", None
    if not loc:
        return f"the request body {_reason(err)} (sent as application/json)", None
    if kind == "missing":
        return f"{loc}: {_reason(err)}", loc
    reason = _reason(err)
    # A value that fits none of a union's types fails once per type: name them all.
    same = [e for e in errors if _field_path(e.get("loc", ())) == loc]
    reasons = list(dict.fromkeys(_reason(e) for e in same))
    if len(reasons) > 1 and all(r.startswith("must be ") for r in reasons):
        reason = "must be " + " or ".join(r.removeprefix("must be ") for r in reasons)
    elif any(_field_path(e.get("loc", ())).startswith(loc + "[") for e in errors[1:]):
        reason = "matches none of the accepted forms"
    return f"{loc}: {reason}, got {_short(err.get('input'))}", loc


def _field_path(loc: Sequence[Any]) -> str:
    """('body', 'messages', 0, 'content', 'str') -> 'messages[0].content'."""
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and _is_field_name(part):
            path += f".{part}" if path else part
    return path


def _is_field_name(part: str) -> bool:
    # pydantic adds union member tags ('str', 'list[int]', 'ChatMessage', 'function-after[...]')
    # to error locations; real field names here are lowercase identifiers.
    type_tags = {"str", "int", "float", "bool", "list", "dict", "none", "json-or-python"}
    return part.isidentifier() and part.islower() and part not in type_tags


_KIND_REASONS = {
    "missing": "is required",
    "extra_forbidden": "is not a recognized field",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "string_type": "must be a string",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be a JSON object",
    "union_tag_invalid": "has an unknown type",
}


def _reason(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    bounds = {
        "greater_than_equal": ("ge", ">="),
        "greater_than": ("gt", ">"),
        "less_than_equal": ("le", "<="),
        "less_than": ("lt", "<"),
    }
    if kind in bounds:
        key, op = bounds[kind]
        return f"must be {op} {ctx.get(key)}"
    if kind in ("too_long", "too_short"):
        which = "at most" if kind == "too_long" else "at least"
        limit = ctx.get("max_length" if kind == "too_long" else "min_length")
        return f"must have {which} {limit} items"
    if kind in ("string_too_long", "string_too_short"):
        which = "at most" if kind == "string_too_long" else "at least"
        limit = ctx.get("max_length" if kind == "string_too_long" else "min_length")
        return f"must have {which} {limit} characters"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in _KIND_REASONS:
        return _KIND_REASONS[kind]
    if kind == "value_error":
        return str(ctx.get("error", "is invalid"))
    return "is invalid"


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, default=str)
    except ValueError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def install_exception_handlers(app: FastAPI) -> None:
    """Answer every error raised in a route with the envelope."""

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message, param = validation_message(exc.errors())
        return APIError(400, message, param=param).response()

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        if status == 400 and message == "There was an error parsing the body":
            message = "the request body could not be parsed; send UTF-8 encoded JSON"
        elif status == 404:
            message = "no such route; see /docs for the API"
        elif status == 405:
            message = f"method not allowed; this route accepts {(exc.headers or {}).get('Allow')}"
        return APIError(status, message, headers=exc.headers).response()

    async def on_disconnect(_: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening; the status is for the logs

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(ClientDisconnected, on_disconnect)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
