"""The single path from a conversation to its socket.

Every outbound frame goes through an :class:`Outbox`, which guarantees three things:

* **Currency.** A frame belongs to a turn (or to none, like ``pong``); right before it is
  written, the outbox asks the turn whether it is still current. A turn stops being current
  synchronously, the moment a newer transcript is read, so no chunk of a superseded turn is
  written after that point, even if it was queued before.
* **Order.** Frames are written in the order they were handed over, by one writer at a time.
* **No head-of-line backlog.** When the peer reads slowly, frames wait here instead of in the
  transport buffer: text frames of the same turn are merged, and frames of superseded turns are
  dropped instead of being sent late.

The common case costs nothing extra: with an idle socket, :meth:`send` writes at once, in the
caller's task. :meth:`post` is for synchronous callers (timers, the receive loop); it queues the
frame for a pump task owned by the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import structlog

from voice_channel.protocol import encode_agent_response, encode_pong

__all__ = ["Frame", "Outbox", "TurnLike", "WebSocketLike"]


class TurnLike(Protocol):
    @property
    def event_id(self) -> int | None: ...

    @property
    def is_current(self) -> bool: ...


class WebSocketLike(Protocol):
    async def send_str(self, data: str) -> None: ...


@dataclass(slots=True)
class Frame:
    turn: TurnLike | None
    content: str = ""
    is_final: bool = False
    pong: bool = False

    def encode(self) -> str:
        if self.pong:
            return encode_pong()
        assert self.turn is not None
        return encode_agent_response(self.content, self.turn.event_id, self.is_final)


class Outbox:
    """Serialises frames onto one WebSocket, dropping those of turns that are no longer current."""

    def __init__(self, ws: WebSocketLike, log: structlog.typing.FilteringBoundLogger) -> None:
        self._ws = ws
        self._log = log
        self._queue: deque[Frame] = deque()
        self._writing = False
        self._closed = False
        self._pump: asyncio.Task[None] | None = None
        self.frames_sent = 0
        #: Frames never written: of superseded turns, and whatever was queued at close.
        self.frames_dropped = 0
        #: Of those, the frames of superseded turns.
        self.frames_superseded = 0

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, frame: Frame) -> None:
        """Write ``frame`` now if the socket is idle, else queue it behind the frames in flight."""
        if self._closed:
            return
        if self._writing:
            self._queue.append(frame)  # behind the frame in flight; its writer sends this too
            return
        if self._queue:
            self._queue.append(frame)  # posted frames go first, in order
            await self._drain()
            return
        turn = frame.turn
        if turn is not None and not turn.is_current:
            self.frames_dropped += 1
            self.frames_superseded += 1
            return
        # The common case: an idle socket. Write at once, in the caller's task.
        self._writing = True
        try:
            await self._ws.send_str(frame.encode())
            self.frames_sent += 1
        except (ConnectionError, RuntimeError) as exc:
            self._fail(exc)
        finally:
            self._writing = False
            if self._queue and not self._closed:
                self._start_pump()

    def post(self, frame: Frame) -> None:
        """Queue ``frame`` from synchronous code; the outbox's pump task writes it."""
        if self._closed:
            return
        self._queue.append(frame)
        if not self._writing:
            self._start_pump()

    async def aclose(self) -> None:
        """Stop writing; drop what is queued; cancel and await the pump task."""
        self._closed = True
        self.frames_dropped += len(self._queue)
        self._queue.clear()
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _drain(self) -> None:
        self._writing = True
        try:
            while self._queue and not self._closed:
                frame = self._next_frame()
                if frame is None:
                    continue
                try:
                    await self._ws.send_str(frame.encode())
                except (ConnectionError, RuntimeError) as exc:
                    self._fail(exc)
                    return
                self.frames_sent += 1
        finally:
            self._writing = False
            if self._queue and not self._closed:
                # The writing task was cancelled mid-write (its turn was superseded): the frames
                # still queued belong to others, so hand them over to the pump.
                self._start_pump()

    def _fail(self, exc: BaseException) -> None:
        # The peer is gone; the receive loop sees it too and closes the conversation.
        self._log.info("socket_write_failed", error=str(exc))
        self._closed = True
        self._queue.clear()

    def _start_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._drain(), name="outbox-pump")

    def _next_frame(self) -> Frame | None:
        frame = self._queue.popleft()
        turn = frame.turn
        if turn is not None and not turn.is_current:
            self.frames_dropped += 1
            self.frames_superseded += 1
            return None
        if turn is not None and not frame.is_final:
            # Merge queued text of the same turn into one frame: fewer, larger frames.
            while self._queue and self._queue[0].turn is turn and not self._queue[0].is_final:
                frame = Frame(turn, frame.content + self._queue.popleft().content)
        return frame
