"""Watching one Speech Engine peer, and closing it when it misbehaves.

A :class:`PeerGuard` closes the socket with 1008 (Policy Violation), logged as ``peer_closed``
with the reason, when the peer:

* has not started its conversation (``init``, or a first transcript) within
  ``server.init_timeout_s`` (reason ``no_init``): an idle socket must not hold a
  ``max_conversations`` slot;
* does not read what it is sent (reason ``not_reading``): the
  :class:`~voice_channel.channel.outbox.Outbox` hit its bounds or its write timeout, or a WebSocket ping
  went unanswered for ``server.heartbeat_s``.

The liveness check is ours rather than aiohttp's ``heartbeat``: aiohttp treats *any* received
frame as a sign of life, so a peer that keeps sending but never reads is never caught. Here a
ping goes out every ``heartbeat_s`` whatever the traffic (also keeping idle links open; the pings of
all sockets run on one timer, :mod:`voice_channel.channel.pings`), and only
a pong carrying that ping's random payload answers it; a peer that reads nothing cannot produce
one. ElevenLabs answers pings (RFC 6455 requires it, and the official SDK's own server, built on
``websockets`` with a 20 s ping interval and a 20 s pong timeout, depends on it); it sends ``init``
first, at once, so a few seconds' deadline never touches a conforming peer.

Every close (1000, 1001 at shutdown, 1008) is bounded: the close handshake gets
``server.write_timeout_s``, then the connection is reset, because unsent bytes would otherwise keep
a closing transport (and its file descriptor) alive for as long as the peer keeps its receive
window shut.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSCloseCode, web

from voice_channel.channel.outbox import Frame, Outbox

if TYPE_CHECKING:
    from voice_channel.channel.conversation import Conversation
    from voice_channel.serving.keys import ChannelState

__all__ = ["PeerGuard"]

log = structlog.get_logger("voice_channel.peer")


class PeerGuard:
    """The deadlines of one peer, and how its socket is closed.

    Created in the request handler's task. The socket is always closed by the handler's own
    ending (:meth:`close_socket`), never by another task while the handler reads: aiohttp drops
    the connection without waiting for the peer's reply to a close sent while another task
    receives, and the peer then sees 1006 instead of the code. To close from outside (a missed
    deadline, shutdown), the guard interrupts the handler's receive loop instead.
    """

    __slots__ = (
        "_awaiting_pong",
        "_conversation",
        "_finished",
        "_handler",
        "_init_timer",
        "_loop",
        "_outbox",
        "_ping_bucket",
        "_request",
        "_state",
        "_ws",
        "close_code",
        "close_message",
        "interrupted",
        "reason",
        "receiving",
    )

    def __init__(self, state: ChannelState, request: web.Request, ws: web.WebSocketResponse) -> None:
        self._state = state
        self._request = request
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._handler = asyncio.current_task()
        self._conversation: Conversation | None = None
        self._outbox: Outbox | None = None
        self._init_timer: asyncio.TimerHandle | None = None
        #: The bucket of the server's ping wheel this socket is in, while it is on it.
        self._ping_bucket: int | None = None
        #: Payload of the ping waiting for its pong, if one is.
        self._awaiting_pong: bytes | None = None
        #: The handler is in its receive loop (and may be interrupted there).
        self.receiving = False
        #: The receive loop was interrupted by this guard (the cancellation is ours to absorb).
        self.interrupted = False
        #: Why the server closed the socket (``no_init``, ``not_reading``), if it did.
        self.reason: str | None = None
        self.close_code: int = WSCloseCode.OK
        self.close_message = ""
        #: Created only when someone waits for the handler's ending (a shutdown): most never do.
        self._finished: asyncio.Future[None] | None = None

    @property
    def finished(self) -> asyncio.Future[None]:
        """Done once the handler's ending (conversation and socket closed) is over."""
        if self._finished is None:
            self._finished = self._loop.create_future()
        return self._finished

    def mark_finished(self) -> None:
        """The handler's ending is over (called once, by the handler)."""
        finished = self.finished  # created now if nobody waited: already done for whoever asks later
        if not finished.done():
            finished.set_result(None)

    def watch(self, conversation: Conversation, outbox: Outbox) -> None:
        """Arm the init deadline and put the socket on the server's ping wheel."""
        self._conversation = conversation
        self._outbox = outbox
        self._init_timer = self._loop.call_later(self._state.settings.server.init_timeout_s, self._init_deadline)
        self._ping_bucket = self._state.pings.add(self)

    def stop(self) -> None:
        """Cancel the init deadline and leave the ping wheel (the conversation is over)."""
        if self._init_timer is not None:
            self._init_timer.cancel()
            self._init_timer = None
        if self._ping_bucket is not None:
            self._state.pings.remove(self, self._ping_bucket)
            self._ping_bucket = None

    def on_pong(self, payload: bytes) -> None:
        """A WebSocket pong arrived; it answers our ping only if it carries that ping's payload."""
        if payload == self._awaiting_pong:
            self._awaiting_pong = None

    def not_reading(self, why: str) -> None:
        """The outbox gave up on the peer (``write_timeout`` or ``outbox_full``)."""
        self.close("not_reading", f"not reading ({why})")

    def close(self, reason: str, detail: str) -> None:
        """End the conversation and close the socket with 1008, once; ``reason`` becomes the end reason."""
        if self.reason is not None or self._ws.closed or self._state.shutting_down:
            return
        self.reason = reason
        self.close_code, self.close_message = WSCloseCode.POLICY_VIOLATION, detail
        self.stop()
        logger = self._conversation.log if self._conversation is not None else log
        logger.warning("peer_closed", code=int(WSCloseCode.POLICY_VIOLATION), reason=reason, detail=detail)
        self._interrupt()

    def shut_down(self) -> bool:
        """For server shutdown: end the receive loop, so that the handler closes with 1001.

        Returns False when the handler is not receiving (it is already ending).
        """
        self.close_code, self.close_message = WSCloseCode.GOING_AWAY, "server shutdown"
        return self._interrupt()

    async def close_socket(self) -> None:
        """Close the socket with :attr:`close_code`: the handshake is bounded by ``server.write_timeout_s``,
        then the connection is reset."""
        # Taken now: aiohttp drops the request's transport once the connection is lost.
        transport = self._request.transport
        try:
            # A peer that reads gets the close handshake; one that does not cannot hold it up.
            async with asyncio.timeout(self._state.settings.server.write_timeout_s):
                await self._ws.close(code=self.close_code, message=self.close_message.encode()[:120])
        except TimeoutError:
            pass
        finally:
            if transport is not None:
                # Unsent bytes would otherwise keep a closing transport (and its fd) alive for as
                # long as the peer keeps its receive window shut. After a completed handshake the
                # transport is already closed and this does nothing.
                transport.abort()

    # --- internals -------------------------------------------------------------------------------

    def _interrupt(self) -> bool:
        handler = self._handler
        if not self.receiving or handler is None or handler.done() or self.interrupted:
            return False
        self.interrupted = True
        handler.cancel()
        return True

    def _init_deadline(self) -> None:
        self._init_timer = None
        conversation = self._conversation
        if conversation is None or conversation.conversation_id is not None or conversation.closed:
            return
        self.close("no_init", f"no init within {self._state.settings.server.init_timeout_s:g}s")

    def ping_due(self) -> None:
        """Called by the ping wheel every ``heartbeat_s``: ping, unless the last ping went unanswered."""
        if self._awaiting_pong is not None:
            heartbeat_s = self._state.settings.server.heartbeat_s
            self.close("not_reading", f"no pong within {heartbeat_s:g}s")
            return
        if self._outbox is not None and not self._outbox.closed:
            self._awaiting_pong = os.urandom(8)
            self._outbox.post(Frame(None, ws_ping=self._awaiting_pong))
