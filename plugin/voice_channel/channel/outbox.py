"""The single path from a conversation to its socket.

Every outbound frame goes through an :class:`Outbox`, which guarantees:

* **Currency.** A frame belongs to a turn (or to none, like ``pong``); right before it is
  written, the outbox asks the turn whether it is still current. A turn stops being current
  synchronously, the moment a newer transcript is read, so no chunk of a superseded turn is
  written after that point, even if it was queued before.
* **Order.** Frames are written in the order they were handed over, by one writer at a time.
* **No head-of-line backlog.** When the peer reads slowly, frames wait here instead of in the
  transport buffer: text frames of the same turn are merged, and frames of superseded turns are
  dropped instead of being sent late.
* **Bounded memory.** The queue is bounded (:class:`OutboxLimits`): a pending ``pong`` absorbs
  later ones (one is enough; RFC 6455 §5.5.3 allows the same for WebSocket pongs), :meth:`send`
  waits for room once half the bounds are used (backpressure on the runtime's stream, so a
  slow-but-reading peer gets everything), and a :meth:`post` that would pass the bounds, or a
  write the peer does not take within ``write_timeout_s`` (checked by a watchdog, within 1¼ of
  it, so that a write costs no timer; the watchdog runs only while there is something to write),
  means the peer is not reading: the
  outbox closes and calls ``on_stuck(reason)``, and the endpoint closes the socket (1008).
  A peer that keeps sending but never reads can therefore cost no more than the bounds plus
  aiohttp's transport buffer, for no longer than the write timeout.

The common case costs nothing extra: with an idle socket, :meth:`send` writes at once, in the
caller's task. :meth:`post` is for synchronous callers (timers, the receive loop); it queues the
frame for a pump task owned by the outbox. An idle outbox holds no queue, event or timer: they are
created when first needed (thousands of idle conversations per process each keep only counters).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from voice_channel.channel.protocol import encode_agent_response, encode_pong

__all__ = ["Frame", "Outbox", "OutboxLimits", "TurnLike", "WebSocketLike"]

#: Bytes counted per queued frame on top of its text: the JSON envelope, roughly.
_FRAME_OVERHEAD = 64
#: Watchdog looks per write timeout: a stuck write is given up on within 1¼ timeouts.
_WATCHDOG_TICKS = 4


class TurnLike(Protocol):
    @property
    def event_id(self) -> int | None: ...

    @property
    def is_current(self) -> bool: ...


class WebSocketLike(Protocol):
    async def send_str(self, data: str) -> None: ...

    async def pong(self, message: bytes = b"") -> None: ...

    async def ping(self, message: bytes = b"") -> None: ...


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """How much may wait for one peer, and how long one write may take.

    :param max_frames: queued frames at most.
    :param max_bytes: queued bytes (UTF-8 text plus a per-frame envelope) at most.
    :param write_timeout_s: longest a single write may wait for the peer to take it.
    """

    max_frames: int = 256
    max_bytes: int = 1_048_576
    write_timeout_s: float = 10.0


@dataclass(slots=True)
class Frame:
    """One outbound frame: an ``agent_response`` of ``turn``, a JSON ``pong``, or a WebSocket pong."""

    turn: TurnLike | None
    content: str = ""
    is_final: bool = False
    pong: bool = False
    #: Payload of a WebSocket-level (RFC 6455) pong, answering a WebSocket ping.
    ws_pong: bytes | None = None
    #: Payload of a WebSocket-level ping (the liveness check, :mod:`voice_channel.channel.peer`).
    ws_ping: bytes | None = None

    def encode(self) -> str:
        if self.pong:
            return encode_pong()
        assert self.turn is not None
        return encode_agent_response(self.content, self.turn.event_id, self.is_final)

    def size(self) -> int:
        return _FRAME_OVERHEAD + len(self.content.encode()) + len(self.ws_pong or b"") + len(self.ws_ping or b"")


class Outbox:
    """Serialises frames onto one WebSocket, dropping those of turns that are no longer current."""

    __slots__ = (
        "_closed",
        "_in_flight",
        "_limits",
        "_loop",
        "_on_stuck",
        "_pending_pong",
        "_pending_ws_pong",
        "_pump",
        "_queue",
        "_queued_bytes",
        "_room",
        "_stalled_write",
        "_watchdog",
        "_writes_started",
        "_writing",
        "_ws",
        "frames_dropped",
        "frames_sent",
        "frames_superseded",
        "log",
        "pongs_coalesced",
        "stuck_reason",
    )

    def __init__(
        self,
        ws: WebSocketLike,
        log: structlog.typing.FilteringBoundLogger,
        limits: OutboxLimits | None = None,
        on_stuck: Callable[[str], None] | None = None,
    ) -> None:
        self._ws = ws
        #: The logger it reports on; the conversation binds its id into it once known.
        self.log = log
        self._limits = limits or OutboxLimits()
        self._on_stuck = on_stuck
        self._loop = asyncio.get_running_loop()
        #: Frames waiting to be written; created with the first one (``None`` reads as empty).
        self._queue: deque[Frame] | None = None
        self._queued_bytes = 0
        #: A task (a sender's, or the pump) is writing; others queue behind it.
        self._writing = False
        self._closed = False
        self._pump: asyncio.Task[None] | None = None
        #: The queued, not yet written pongs: later ones are absorbed by these.
        self._pending_pong: Frame | None = None
        self._pending_ws_pong: Frame | None = None
        #: Set when a queued frame leaves the queue; senders waiting for room wait on it.
        self._room: asyncio.Event | None = None
        self.frames_sent = 0
        #: Frames never written: of superseded turns, and whatever was queued at close.
        self.frames_dropped = 0
        #: Of those, the frames of superseded turns.
        self.frames_superseded = 0
        self.pongs_coalesced = 0
        #: Why the peer was given up on (``write_timeout`` or ``outbox_full``), if it was.
        self.stuck_reason: str | None = None
        # The write in flight, as the watchdog sees it: a count of writes started, whether one
        # has not returned, and since when (by the watchdog's clock) the same one has not.
        self._writes_started = 0
        self._in_flight = False
        self._stalled_write: tuple[int, float] | None = None
        #: Armed by the first write after a quiet spell; it stops itself once nothing is left to write.
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_frames(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    async def send(self, frame: Frame) -> None:
        """Write ``frame`` now if the socket is idle, else queue it behind the frames in flight.

        While another task writes and the queue holds half its bounds, this waits for room: the
        runtime's stream slows down to the peer's pace instead of piling up here.
        """
        while self._writing:
            if self._closed:
                return
            if not self._over_bounds(None, full=False):
                self._queue_frame(frame)  # behind the frame in flight; its writer sends this too
                return
            room = self._room
            if room is None:
                room = self._room = asyncio.Event()
            room.clear()
            await room.wait()
        if self._closed:
            return
        if self._queue:
            self._queue_frame(frame)  # posted frames go first, in order
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
            await self._start_write(frame)
            self.frames_sent += 1
        except (ConnectionError, RuntimeError) as exc:
            self._fail(exc)
        finally:
            self._in_flight = self._writing = False
            if self._queue and not self._closed:
                self._start_pump()

    def post(self, frame: Frame) -> None:
        """Queue ``frame`` from synchronous code; the outbox's pump task writes it.

        A queue that would pass its bounds even after dropping superseded frames means the peer
        is not reading: the peer is given up on (``on_stuck("outbox_full")``).
        """
        if self._closed:
            return
        if frame.pong or frame.ws_pong is not None:
            pending = self._pending_pong if frame.pong else self._pending_ws_pong
            if pending is not None:
                # Still waiting to go out: that one answers this ping too (the newest payload).
                self.pongs_coalesced += 1
                if frame.ws_pong is not None:
                    self._queued_bytes += len(frame.ws_pong) - len(pending.ws_pong or b"")
                    pending.ws_pong = frame.ws_pong
                return
        if self._over_bounds(frame, full=True):
            self._compact()
            if self._over_bounds(frame, full=True):
                self._give_up("outbox_full")
                return
        self._queue_frame(frame)
        if not self._writing:
            self._start_pump()

    async def aclose(self) -> None:
        """Stop writing; drop what is queued; cancel and await the pump task."""
        self._closed = True
        self._stop_watchdog()
        self._clear()
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done() and pump is not asyncio.current_task():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    # --- internals -----------------------------------------------------------------------------

    def _start_write(self, frame: Frame) -> Awaitable[None]:
        """The write of ``frame``, marked in flight; the caller awaits it, then clears ``_in_flight``.

        A write waits only when aiohttp's transport buffer is full (the peer is not taking bytes).
        No timer per write, and no extra coroutine (the hot path stays as cheap as a counter): the
        watchdog looks at the write in flight a few times per timeout instead.
        """
        self._writes_started += 1
        self._in_flight = True
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._limits.write_timeout_s / _WATCHDOG_TICKS, self._watch)
        if frame.ws_pong is not None:
            return self._ws.pong(frame.ws_pong)
        if frame.ws_ping is not None:
            return self._ws.ping(frame.ws_ping)
        return self._ws.send_str(frame.encode())

    def _watch(self) -> None:
        """Watchdog tick: give up on the peer if one write has been in flight for the whole timeout."""
        if self._closed:
            self._watchdog = None
            return
        now = self._loop.time()
        if not self._in_flight:
            self._stalled_write = None
            if not self._queue and not self._writing:
                # Nothing in flight and nothing to write: stop; the next write arms it again.
                self._watchdog = None
                return
        elif self._stalled_write is None or self._stalled_write[0] != self._writes_started:
            self._stalled_write = (self._writes_started, now)
        elif now - self._stalled_write[1] >= self._limits.write_timeout_s:
            self._watchdog = None
            self._give_up("write_timeout")
            return
        self._watchdog = self._loop.call_later(self._limits.write_timeout_s / _WATCHDOG_TICKS, self._watch)

    async def _run_pump(self) -> None:
        if not self._writing:  # else the task writing now sends what is queued
            await self._drain()

    async def _drain(self) -> None:
        self._writing = True
        try:
            while self._queue and not self._closed:
                frame = self._next_frame()
                if frame is None:
                    continue
                try:
                    await self._start_write(frame)
                except (ConnectionError, RuntimeError) as exc:
                    self._fail(exc)
                    return
                finally:
                    self._in_flight = False
                self.frames_sent += 1
        finally:
            self._writing = False
            if self._queue and not self._closed:
                # The writing task was cancelled mid-write (its turn was superseded): the frames
                # still queued belong to others, so hand them over to the pump.
                self._start_pump()

    def _start_pump(self) -> None:
        pump = self._pump
        if pump is None or pump.done() or pump is asyncio.current_task():
            self._pump = self._loop.create_task(self._run_pump(), name="outbox-pump")

    def _queue_frame(self, frame: Frame) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(frame)
        self._queued_bytes += frame.size()
        if frame.pong:
            self._pending_pong = frame
        elif frame.ws_pong is not None:
            self._pending_ws_pong = frame

    def _next_frame(self) -> Frame | None:
        frame = self._dequeue()
        queue = self._queue
        assert queue is not None
        turn = frame.turn
        if turn is not None and not turn.is_current:
            self.frames_dropped += 1
            self.frames_superseded += 1
            return None
        if turn is not None and not frame.is_final:
            # Merge queued text of the same turn into one frame: fewer, larger frames.
            parts = [frame.content]
            while queue and queue[0].turn is turn and not queue[0].is_final:
                parts.append(self._dequeue().content)
            if len(parts) > 1:
                frame = Frame(turn, "".join(parts))
        return frame

    def _dequeue(self) -> Frame:
        assert self._queue is not None
        frame = self._queue.popleft()
        self._queued_bytes -= frame.size()
        if frame is self._pending_pong:
            self._pending_pong = None
        elif frame is self._pending_ws_pong:
            self._pending_ws_pong = None
        if self._room is not None:
            self._room.set()
        return frame

    def _over_bounds(self, frame: Frame | None, *, full: bool) -> bool:
        """Whether adding ``frame`` passes the bounds (``full``) or half of them (senders' share)."""
        limits = self._limits
        frames = self.queued_frames + (frame is not None)
        size = self._queued_bytes + (frame.size() if frame is not None else 0)
        if full:
            return frames > limits.max_frames or size > limits.max_bytes
        return frames > limits.max_frames // 2 or size > limits.max_bytes // 2

    def _compact(self) -> None:
        """Drop queued frames of superseded turns (they would be dropped at write time anyway)."""
        queue = self._queue or ()
        kept = [f for f in queue if f.turn is None or f.turn.is_current]
        dropped = len(queue) - len(kept)
        if dropped:
            self.frames_dropped += dropped
            self._queue = deque(kept)
            self._queued_bytes = sum(f.size() for f in kept)

    def _give_up(self, reason: str) -> None:
        """The peer does not take what we send: stop, and let the endpoint close the socket."""
        if self._closed:
            return
        self.stuck_reason = reason
        self.log.warning(
            "peer_not_reading",
            reason=reason,
            queued_frames=self.queued_frames,
            queued_bytes=self._queued_bytes,
            write_timeout_s=self._limits.write_timeout_s,
        )
        self._closed = True
        self._stop_watchdog()
        self._clear()
        if self._on_stuck is not None:
            self._on_stuck(reason)

    def _fail(self, exc: BaseException) -> None:
        # The peer is gone; the receive loop sees it too and closes the conversation.
        if not self._closed:
            self.log.info("socket_write_failed", error=str(exc))
        self._closed = True
        self._stop_watchdog()
        self._clear()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _clear(self) -> None:
        self.frames_dropped += self.queued_frames
        self._queue = None
        self._queued_bytes = 0
        self._pending_pong = self._pending_ws_pong = None
        if self._room is not None:
            self._room.set()  # wake waiting senders: they see the outbox closed
