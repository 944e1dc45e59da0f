"""uvicorn's WebSocket protocol with a direct path for streaming sessions (`/v1/streams`).

Through plain ASGI each incoming message is queued for the app's task, and uvicorn stops
reading the socket until that task wakes up and takes it; each outgoing frame is an `await`
through Starlette's and uvicorn's send wrappers, from a task woken for it. At 10,000 small
frames a second those hops were a quarter of the server's CPU per event (bench_stream).

`DirectWebSocketProtocol` (what `augury serve` runs) adds the ASGI scope extension
`"augury.direct"`: a `DirectSocket` that lets the app

- take messages synchronously, as they are parsed (`attach(handler)`). A handler that returns
  False hands the message back: it goes to ASGI `receive()` as usual and direct delivery stops
  until the app attaches again, so messages keep their order whichever way they go;
- write a text frame at once when the socket can take it (`send_nowait`; False when the
  transport's buffer is full or the connection is closing: then send through ASGI, which
  waits).

Apps must work without it (another server, Starlette's test client): it only saves work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

DIRECT_EXTENSION = "augury.direct"

Handler = Callable[[str | bytes], bool]
"""Takes one message (text or bytes); False hands it back to ASGI `receive()`."""


class DirectSocket(Protocol):
    """What `scope["extensions"]["augury.direct"]` offers (see the module docstring)."""

    def attach(self, handler: Handler) -> bool:
        """Deliver the next messages to `handler`; False (and nothing changes) while messages
        are queued for ASGI `receive()`: take those first, then attach."""
        ...

    def detach(self) -> None:
        """Deliver messages through ASGI `receive()` again."""
        ...

    def send_nowait(self, text: str) -> bool:
        """Write a text frame now; False (nothing written) if the socket cannot take it."""
        ...


def direct_socket(scope: Mapping[str, Any]) -> DirectSocket | None:
    """The connection's direct path, or None where the server does not offer one."""
    socket: DirectSocket | None = scope.get("extensions", {}).get(DIRECT_EXTENSION)
    return socket


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol plus the `augury.direct` extension."""

    _handler: Handler | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][DIRECT_EXTENSION] = self

    def attach(self, handler: Handler) -> bool:
        if not self.queue.empty():
            return False
        self._handler = handler
        return True

    def detach(self) -> None:
        self._handler = None

    def send_receive_event_to_app(self) -> None:
        handler = self._handler
        if handler is None or self.close_sent:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        payload: str | bytes | None = data
        if self.curr_msg_data_type == "text":
            try:
                payload = data.decode()
            except UnicodeDecodeError:  # handed back: uvicorn closes the connection for it
                payload = None
        if payload is not None and handler(payload):
            self.frames = []
            return
        self._handler = None  # handed back: this message and the next go through ASGI
        super().send_receive_event_to_app()

    def send_nowait(self, text: str) -> bool:
        if (
            self.close_sent
            or not self.handshake_complete
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:  # the peer is closing
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
