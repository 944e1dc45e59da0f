"""A bounded per-session input queue with a declared overflow policy.

    block        the reader waits for room (`room()`), so it stops reading the socket and TCP
                 flow control slows the client down
    drop_oldest  `offer` never refuses: the oldest queued events make room and are counted

Either way the queue never holds more than `capacity` events, so memory stays bounded. The
queue itself never blocks: the reader offers events and awaits `room()` when some were
refused; the scheduler takes events without waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Literal

from augury.stream.windows import Event

Overflow = Literal["block", "drop_oldest"]


class EventQueue:
    """See the module docstring. One producer (the socket reader), one consumer (the
    scheduler)."""

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1 event, got {capacity}")
        if overflow not in ("block", "drop_oldest"):
            raise ValueError(f"overflow must be 'block' or 'drop_oldest', got {overflow!r}")
        self.capacity = capacity
        self.overflow = overflow
        self._items: deque[Event] = deque()
        self._room: asyncio.Future[None] | None = None  # the reader waiting for room
        self.dropped = 0
        """Events discarded by drop_oldest so far."""
        self.high_water = 0
        """The most events ever queued at once."""

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, events: Sequence[Event], start: int = 0) -> int:
        """Queue events[start:] in order as far as the policy allows; returns the index of
        the first event not queued (len(events) when all were)."""
        end = len(events)
        if self.overflow == "block":
            end = min(end, start + self.capacity - len(self._items))
        elif end - start > self.capacity:  # only the newest `capacity` can stay
            self.dropped += end - start - self.capacity
            start = end - self.capacity
        excess = len(self._items) + (end - start) - self.capacity
        for _ in range(max(0, excess)):  # drop_oldest only: block never overfills
            self._items.popleft()
            self.dropped += 1
        self._items.extend(events[start:end])
        self.high_water = max(self.high_water, len(self._items))
        return end

    async def room(self) -> None:
        """Wait until the queue has room for at least one event."""
        while len(self._items) >= self.capacity:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def take(self, max_items: int) -> list[Event]:
        """Up to `max_items` events in order, without waiting (possibly none)."""
        n = min(max_items, len(self._items))
        out = [self._items.popleft() for _ in range(n)]
        self._wake_reader()
        return out

    def take_all(self) -> list[Event]:
        """Everything queued, without waiting (detach and shutdown)."""
        out = list(self._items)
        self._items.clear()
        self._wake_reader()
        return out

    def _wake_reader(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._room = None
