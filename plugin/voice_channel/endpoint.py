"""The aiohttp handler of the Speech Engine WebSocket endpoint.

Verifies the handshake before upgrading (401 otherwise), then runs the receive loop: each frame
is parsed (:mod:`voice_channel.protocol`) and handed to the conversation, which never blocks the
loop, so ``ping`` is answered at once even while a reply streams. A malformed frame is logged
and the conversation goes on; a frame larger than ``server.max_frame_bytes`` closes the socket
with 1009 (one of exactly that size is accepted).

A misbehaving peer is closed with 1008 (Policy Violation), logged with the reason: one that has
not started its conversation within ``server.init_timeout_s`` (``no_init``), and one that does
not read what it is sent (``not_reading``: the :class:`~voice_channel.outbox.Outbox` hit its
bounds or its write timeout). Such a close is bounded: the close handshake gets
``server.write_timeout_s``, then the connection is reset, so a peer that reads nothing cannot
keep the socket (or its transport buffer) alive.

WebSocket pings are answered through the outbox too (aiohttp's ``autoping`` is off), so that a
ping flood from a peer that does not read queues at most one pong.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from voice_channel.auth import check_handshake, public_headers
from voice_channel.conversation import Conversation
from voice_channel.health import not_ready_reason
from voice_channel.keys import STATE, ChannelState
from voice_channel.outbox import Frame, Outbox, OutboxLimits
from voice_channel.protocol import (
    CloseMessage,
    ErrorMessage,
    EventIdOutOfRange,
    InitMessage,
    PingMessage,
    ProtocolError,
    UnknownMessage,
    UserTranscriptMessage,
    parse_frame,
)

__all__ = ["speech_engine_endpoint"]

log = structlog.get_logger("voice_channel.endpoint")


async def speech_engine_endpoint(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[STATE]
    settings = state.settings
    structlog.contextvars.clear_contextvars()
    rejection = check_handshake(request.headers, settings)
    if rejection is not None:
        log.warning("handshake_rejected", reason=rejection.reason, peer=request.remote)
        return web.Response(status=401, text=rejection.public + "\n")
    not_ready = not_ready_reason(state)
    if not_ready is not None:
        log.warning("conversation_refused_not_ready", reason=not_ready)
        return web.Response(status=503, text=f"not ready: {not_ready}\n")
    if len(state.conversations) >= settings.server.max_conversations:
        log.warning("conversation_limit_reached", limit=settings.server.max_conversations)
        return web.Response(status=503, text="too many conversations\n")

    server = settings.server
    ws = web.WebSocketResponse(
        heartbeat=server.heartbeat_s,
        # aiohttp refuses a frame of exactly its limit; ours is the largest accepted size.
        max_msg_size=server.max_frame_bytes + 1,
        autoping=False,  # WebSocket pings are answered through the outbox: bounded, coalesced
        compress=False,  # frames are written synchronously and in order; no compressor state to guard
    )
    await ws.prepare(request)
    peer = _PeerCloser(state, request, ws)
    outbox = Outbox(
        ws,
        log,
        OutboxLimits(server.outbox_max_frames, server.outbox_max_bytes, server.write_timeout_s),
        on_stuck=peer.not_reading,
    )
    conversation = Conversation(
        runtime=state.runtime,
        runtime_name=state.runtime_entry.name,
        hooks=state.hooks,
        settings=settings,
        outbox=outbox,
        handshake_headers=public_headers(request.headers, settings),
    )
    peer.conversation = conversation
    state.conversations[conversation] = ws
    init_deadline = asyncio.get_running_loop().call_later(server.init_timeout_s, peer.init_deadline)
    reason = "disconnect"
    try:
        reason = await _receive_loop(ws, conversation, outbox)
    finally:
        init_deadline.cancel()
        if peer.reason is not None:
            reason = peer.reason
        if state.shutting_down:
            reason = "shutdown"
        closing = asyncio.get_running_loop().create_task(_end(state, conversation, ws, reason))
        state.closing.add(closing)
        closing.add_done_callback(state.closing.discard)
        await asyncio.shield(closing)
    return ws


async def _end(state: ChannelState, conversation: Conversation, ws: web.WebSocketResponse, reason: str) -> None:
    try:
        await conversation.close(reason)
    finally:
        state.conversations.pop(conversation, None)
        with contextlib.suppress(Exception):
            server_close = state.socket_closes.get(ws)
            if server_close is not None:
                await server_close
            elif not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY if reason == "shutdown" else WSCloseCode.OK)


class _PeerCloser:
    """Closes a misbehaving peer with 1008: logged with the reason, bounded, then reset."""

    def __init__(self, state: ChannelState, request: web.Request, ws: web.WebSocketResponse) -> None:
        self._state = state
        self._request = request
        self._ws = ws
        self.conversation: Conversation | None = None
        #: Why the server closed the socket (``no_init``, ``not_reading``), if it did.
        self.reason: str | None = None

    def init_deadline(self) -> None:
        """Timer callback: close a socket whose conversation has not started by the deadline."""
        conversation = self.conversation
        if conversation is None or conversation.conversation_id is not None or conversation.closed:
            return
        self.close("no_init", f"no init within {self._state.settings.server.init_timeout_s:g}s")

    def not_reading(self, why: str) -> None:
        """The outbox gave up on the peer (``write_timeout`` or ``outbox_full``)."""
        self.close("not_reading", f"not reading ({why})")

    def close(self, reason: str, message: str) -> None:
        if self.reason is not None or self._ws.closed or self._state.shutting_down:
            return
        self.reason = reason
        logger = self.conversation.log if self.conversation is not None else log
        logger.warning("peer_closed", code=int(WSCloseCode.POLICY_VIOLATION), reason=reason, detail=message)
        task = asyncio.get_running_loop().create_task(self._close(message))
        self._state.socket_closes[self._ws] = task
        task.add_done_callback(self._forget)

    async def _close(self, message: str) -> bool:
        # Taken now: aiohttp drops the request's transport once the connection is lost.
        transport = self._request.transport
        try:
            # A peer that reads gets the close handshake; one that does not cannot hold it up.
            async with asyncio.timeout(self._state.settings.server.write_timeout_s):
                await self._ws.close(code=WSCloseCode.POLICY_VIOLATION, message=message.encode())
        except TimeoutError:
            pass
        finally:
            if transport is not None:
                # Unsent bytes would otherwise keep a closing transport (and its fd) alive for
                # as long as the peer keeps its receive window shut.
                transport.abort()
        return True

    def _forget(self, task: asyncio.Task[bool]) -> None:
        if self._state.socket_closes.get(self._ws) is task:
            del self._state.socket_closes[self._ws]


async def _receive_loop(ws: web.WebSocketResponse, conversation: Conversation, outbox: Outbox) -> str:
    """Read frames until the conversation ends; return why it ended."""
    async for msg in ws:
        if msg.type is WSMsgType.PING:
            outbox.post(Frame(None, ws_pong=msg.data))
            continue
        if msg.type is WSMsgType.ERROR:
            # aiohttp records 1006 once its close handshake fails; the error itself keeps 1009.
            if getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                conversation.log.warning("frame_too_big", error=str(msg.data))
                return "too_big"
            conversation.log.warning("socket_error", error=str(msg.data))
            return "error"
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue
        try:
            frame = parse_frame(msg.data)
        except EventIdOutOfRange as exc:
            conversation.log.error("event_id_out_of_range", error=str(exc), size=len(msg.data))
            continue
        except ProtocolError as exc:
            conversation.log.warning("frame_malformed", error=str(exc), size=len(msg.data))
            continue
        if isinstance(frame, UserTranscriptMessage):
            conversation.on_transcript(frame)
        elif isinstance(frame, PingMessage):
            conversation.on_ping()
        elif isinstance(frame, InitMessage):
            conversation.on_init(frame.conversation_id)
        elif isinstance(frame, CloseMessage):
            conversation.log.info("close_received")
            return "close"
        elif isinstance(frame, ErrorMessage):
            # ElevenLabs reports a protocol error before closing; the close follows.
            conversation.log.warning("elevenlabs_error", message=frame.message[:500])
        elif isinstance(frame, UnknownMessage):
            conversation.log.debug("frame_unknown_type_ignored", type=frame.type[:64])
    return "disconnect"
