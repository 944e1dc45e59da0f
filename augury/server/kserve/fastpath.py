"""The inference route answered at the ASGI level: the predictive server's hot path.

`POST /v2/models/{name}[/versions/{version}]/infer` is the one route a busy predictive server
answers thousands of times a second, and FastAPI's routing, dependency and response layers
cost more per request than parsing the tensors and running a batched model. This middleware
sits innermost (inside the auth, body-size, CORS and request-context middlewares, which still
see every request) and answers that route itself with the same `infer_answer` as the FastAPI
route; every other request goes on to the app unchanged. The FastAPI route stays for the
OpenAPI schema and for apps built without this middleware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from augury.predict.repository import ModelRepository
from augury.server.kserve.routes import infer_answer

_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_HEADER_LENGTH = b"inference-header-content-length"


@dataclass(frozen=True)
class RouteTemplate:
    """What a router leaves in scope["route"]: the path template (the request-metrics label)."""

    path: str


_ROUTES = (
    RouteTemplate("/v2/models/{name}/infer"),
    RouteTemplate("/v2/models/{name}/versions/{version}/infer"),
)


class InferFastPath:
    """Answers KServe v2 infer requests for `repository` without the app's router."""

    def __init__(self, app: ASGIApp, repository: ModelRepository) -> None:
        self.app = app
        self.repository = repository

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTES[match[2] is not None]
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        header = None
        for key, value in scope["headers"]:
            if key == _HEADER_LENGTH:
                header = value.decode("latin-1")
        answer = await infer_answer(self.repository, match[1], match[2], b"".join(chunks), header)
        headers = answer.headers
        headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
