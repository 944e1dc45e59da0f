"""A bounded per-session input queue with a declared overflow policy.

    block        put() waits for room, so the reader stops reading the socket and TCP flow
                 control slows the client down
    drop_oldest  put() never waits: the oldest queued events make room and are counted

Either way the queue never holds more than `capacity` events, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Literal

from augury.stream.windows import Event

Overflow = Literal["block", "drop_oldest"]


class EventQueue:
    """See the module docstring. One producer (the socket reader), one consumer (the worker)."""

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1 event, got {capacity}")
        if overflow not in ("block", "drop_oldest"):
            raise ValueError(f"overflow must be 'block' or 'drop_oldest', got {overflow!r}")
        self.capacity = capacity
        self.overflow = overflow
        self._items: deque[Event] = deque()
        self._changed = asyncio.Condition()
        self.dropped = 0
        """Events discarded by drop_oldest so far."""
        self.high_water = 0
        """The most events ever queued at once."""

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, events: Sequence[Event]) -> None:
        """Queue events in order, applying the overflow policy."""
        async with self._changed:
            for event in events:
                if len(self._items) >= self.capacity:
                    if self.overflow == "drop_oldest":
                        self._items.popleft()
                        self.dropped += 1
                    else:
                        self._changed.notify_all()  # let the worker drain before waiting
                        await self._changed.wait_for(lambda: len(self._items) < self.capacity)
                self._items.append(event)
            self.high_water = max(self.high_water, len(self._items))
            self._changed.notify_all()

    async def get(self, max_items: int) -> list[Event]:
        """Wait for at least one event; take up to `max_items` in order."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._items) > 0)
            n = min(max_items, len(self._items))
            out = [self._items.popleft() for _ in range(n)]
            self._changed.notify_all()
            return out

    def take_all(self) -> list[Event]:
        """Everything queued, without waiting (detach and shutdown)."""
        out = list(self._items)
        self._items.clear()
        return out
