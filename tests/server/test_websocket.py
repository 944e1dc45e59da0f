"""The direct path of augury/server/websocket.py, driven through the real uvicorn protocol with
a fake transport and a real websockets client protocol on the other side: messages reach an
attached handler in order, one it hands back goes to ASGI `receive()` (and so do the ones after
it), attaching waits until ASGI has taken what is queued, and `send_nowait` writes a frame or
refuses when the socket cannot take it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from augury.server.websocket import (
    DIRECT_EXTENSION,
    DirectSocket,
    DirectWebSocketProtocol,
    Handler,
    direct_socket,
)

pytestmark = pytest.mark.anyio


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def close(self) -> None:
        self.closing = True

    def take(self) -> bytes:
        out = b"".join(self.written)
        self.written.clear()
        return out


class Pair:
    """The server protocol under an ASGI app that hands its scope and receive to the test."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {}
        self.receive: Any = None
        self.accepted = asyncio.Event()
        self.done = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            self.scope, self.receive = scope, receive
            self.accepted.set()
            await self.done.wait()

        config = Config(app=app, ws=DirectWebSocketProtocol, lifespan="off", log_config=None)
        config.load()
        self.transport = FakeTransport()
        self.server = DirectWebSocketProtocol(config, ServerState(), {})
        self.server.connection_made(self.transport)
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/"))

    async def open(self) -> DirectSocket:
        self.client.send_request(self.client.connect())
        self.server.data_received(b"".join(self.client.data_to_send()))
        await asyncio.wait_for(self.accepted.wait(), 5)
        self.client.receive_data(self.transport.take())
        assert self.client.state is State.OPEN
        socket = direct_socket(self.scope)
        assert socket is not None and self.scope["extensions"][DIRECT_EXTENSION] is socket
        return socket

    def send(self, *texts: str) -> None:
        """Client frames, delivered to the server in one read."""
        for text in texts:
            self.client.send_text(text.encode())
        self.server.data_received(b"".join(self.client.data_to_send()))

    def received(self) -> list[str]:
        """Frames the server wrote since the last call, as the client parses them."""
        self.client.receive_data(self.transport.take())
        return [e.data.decode() for e in self.client.events_received() if isinstance(e, Frame)]

    async def asgi_text(self) -> str:
        message = await asyncio.wait_for(self.receive(), 5)
        assert message["type"] == "websocket.receive"
        text: str = message["text"]
        return text


def taking_all(taken: list[str | bytes]) -> Handler:
    """A handler that keeps every message in `taken`."""

    def handler(payload: str | bytes) -> bool:
        taken.append(payload)
        return True

    return handler


async def test_messages_reach_the_handler_in_order_until_one_is_handed_back() -> None:
    pair = Pair()
    socket = await pair.open()
    taken: list[str] = []

    def handler(payload: str | bytes) -> bool:
        assert isinstance(payload, str)
        if payload.startswith("stats"):
            return False
        taken.append(payload)
        return True

    assert socket.attach(handler)
    pair.send("e1", "e2", "stats", "e3")
    assert taken == ["e1", "e2"]
    # the handed-back frame and everything after it go to ASGI, in order
    assert await pair.asgi_text() == "stats"
    assert await pair.asgi_text() == "e3"
    assert pair.transport.reading  # uvicorn resumed reading once ASGI took them
    assert socket.attach(handler)
    pair.send("e4")
    assert taken == ["e1", "e2", "e4"]
    socket.detach()
    pair.send("e5")
    assert taken == ["e1", "e2", "e4"] and await pair.asgi_text() == "e5"
    pair.done.set()


async def test_attach_waits_until_asgi_has_taken_what_is_queued() -> None:
    pair = Pair()
    socket = await pair.open()
    taken: list[str | bytes] = []
    handler = taking_all(taken)

    pair.send("queued")
    assert not socket.attach(handler)  # it would overtake "queued"
    pair.send("second")
    assert taken == []
    assert [await pair.asgi_text(), await pair.asgi_text()] == ["queued", "second"]
    assert socket.attach(handler)
    pair.client.send_binary(b"\x00\x01")
    pair.server.data_received(b"".join(pair.client.data_to_send()))
    assert taken == [b"\x00\x01"]
    pair.done.set()


async def test_send_nowait_writes_or_refuses() -> None:
    pair = Pair()
    socket = await pair.open()
    assert socket.send_nowait('{"a": 1}')
    assert pair.received() == ['{"a": 1}']
    pair.server.pause_writing()  # the transport's buffer is above its high-water mark
    assert not socket.send_nowait("held")
    pair.server.resume_writing()
    assert socket.send_nowait("then")
    assert pair.received() == ["then"]
    pair.transport.closing = True
    assert not socket.send_nowait("gone")
    assert pair.transport.take() == b""
    pair.done.set()


def test_other_servers_offer_no_direct_path() -> None:
    assert direct_socket({"type": "websocket", "extensions": {}}) is None
    assert direct_socket({"type": "websocket"}) is None


async def test_invalid_utf8_is_handed_back_and_uvicorn_closes_with_1007() -> None:
    pair = Pair()
    socket = await pair.open()
    taken: list[str | bytes] = []
    handler = taking_all(taken)

    assert socket.attach(handler)
    pair.client.send_text(b"\xff\xfe not utf-8")
    pair.server.data_received(b"".join(pair.client.data_to_send()))
    assert taken == []
    pair.client.receive_data(pair.transport.take())
    closes = [e for e in pair.client.events_received() if isinstance(e, Frame)]
    assert closes and closes[-1].data[:2] == (1007).to_bytes(2, "big")
    assert pair.transport.closing
    pair.done.set()
