"""One timer for the WebSocket pings of every open socket, instead of one timer per socket.

Each :class:`~voice_channel.channel.peer.PeerGuard` must be pinged every ``server.heartbeat_s``
(see that module for why the channel pings itself). A timer per socket costs ~400 bytes per open
conversation (the timer handle, its bound callback, a copy of the context, its heap entry) for as
long as the conversation lasts, and thousands of mostly idle conversations stay open per process.

A :class:`PingWheel` holds the sockets in ``slots`` buckets instead, and one timer visits one bucket
per tick (``heartbeat_s / slots``): a socket is pinged every ``heartbeat_s`` (the first time between
``heartbeat_s - tick`` and ``heartbeat_s`` after it joined), and the pings of many sockets are spread
over the ticks rather than fired together. The timer runs only while some socket is on the wheel,
so a process with no open conversation keeps none.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

import structlog

__all__ = ["PingWheel", "Pinged"]

log = structlog.get_logger("voice_channel.pings")

#: How often the wheel turns, at most (a ping is due within one tick of its time).
TICK_S = 0.25


class Pinged(Protocol):
    """What the wheel calls on each socket it visits."""

    def ping_due(self) -> None:
        """A heartbeat passed since the last visit: ping (or give up on a peer that did not answer)."""
        ...


class PingWheel:
    """The ping schedule of one server's sockets (see the module docstring)."""

    __slots__ = ("_buckets", "_loop", "_next", "_size", "_tick_s", "_timer")

    def __init__(self, heartbeat_s: float) -> None:
        slots = max(1, math.ceil(heartbeat_s / TICK_S))
        self._tick_s = heartbeat_s / slots
        self._buckets: list[set[Pinged]] = [set() for _ in range(slots)]
        #: The bucket the next tick visits.
        self._next = 0
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return self._size

    def add(self, socket: Pinged) -> int:
        """Put ``socket`` on the wheel; returns its bucket (for :meth:`remove`)."""
        # The bucket visited last: it comes round again a whole heartbeat from now.
        bucket = (self._next - 1) % len(self._buckets)
        self._buckets[bucket].add(socket)
        self._size += 1
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self._timer = self._loop.call_later(self._tick_s, self._tick)
        return bucket

    def remove(self, socket: Pinged, bucket: int) -> None:
        """Take ``socket`` off the wheel (nothing if it is not on it); the timer stops with the last one."""
        members = self._buckets[bucket]
        if socket not in members:
            return
        members.discard(socket)
        self._size -= 1
        if not self._size and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self._tick_s, self._tick)
        bucket = self._buckets[self._next]
        self._next = (self._next + 1) % len(self._buckets)
        # A copy: a ping may close its socket, which takes it off the wheel.
        for socket in tuple(bucket):
            try:
                socket.ping_due()
            except Exception:  # one socket's failure must not skip the others' pings
                log.exception("ping_failed")
