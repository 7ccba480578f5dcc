"""The aiohttp handler of the Speech Engine WebSocket endpoint.

Verifies the handshake before upgrading (401 otherwise), then runs the receive loop: each frame
is parsed (:mod:`voice_channel.channel.protocol`) and handed to the conversation, which never blocks the
loop, so ``ping`` is answered at once even while a reply streams. A malformed frame is logged
and the conversation goes on; a frame larger than ``server.max_frame_bytes`` closes the socket
with 1009 (one of exactly that size is accepted).

A misbehaving peer (no ``init`` in time, not reading what it is sent, no pong to a ping) is
closed with 1008 by its :class:`~voice_channel.channel.peer.PeerGuard`.

WebSocket pings are answered through the outbox too (aiohttp's ``autoping`` is off), so that a
ping flood from a peer that does not read queues at most one pong.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from voice_channel.channel.auth import check_handshake, public_headers
from voice_channel.channel.conversation import Conversation
from voice_channel.channel.outbox import Frame, Outbox
from voice_channel.channel.peer import PeerGuard
from voice_channel.channel.protocol import (
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
from voice_channel.serving.health import not_ready_reason
from voice_channel.serving.keys import STATE, ChannelState

__all__ = ["speech_engine_endpoint"]

log = structlog.get_logger("voice_channel.endpoint")


async def speech_engine_endpoint(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[STATE]
    settings = state.settings
    structlog.contextvars.clear_contextvars()
    rejection = check_handshake(request.headers, settings)
    if rejection is not None:
        log.warning("handshake_rejected", reason=rejection.reason, peer=request.remote)
        state.metrics.auth_refused(rejection.public.replace(" ", "_"))
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
        # The PeerGuard pings instead: aiohttp's heartbeat takes any frame as a sign of life.
        heartbeat=None,
        # aiohttp refuses a frame of exactly its limit; ours is the largest accepted size.
        max_msg_size=server.max_frame_bytes + 1,
        autoping=False,  # WebSocket pings are answered through the outbox: bounded, coalesced
        compress=False,  # frames are written synchronously and in order; no compressor state to guard
    )
    # Built before the upgrade is answered: once it is, ``init`` and the first transcript may
    # arrive at once, and this setup would delay the first chunk. Nothing here runs a task or a
    # timer, so an upgrade that fails leaves nothing behind.
    peer = PeerGuard(state, request, ws)
    outbox = Outbox(ws, log, state.outbox_limits, on_stuck=peer.not_reading)
    conversation = Conversation(
        runtime=state.runtime,
        runtime_name=state.runtime_entry.name,
        hooks=state.hooks,
        settings=settings,
        outbox=outbox,
        handshake_headers=public_headers(request.headers, settings),
        metrics=state.metrics,
    )
    await ws.prepare(request)
    state.conversations[conversation] = ws
    state.peers[ws] = peer
    peer.watch(conversation, outbox)
    state.idle.clear()
    state.metrics.conversation_opened(conversation.runtime_name)
    reason = "disconnect"
    try:
        peer.receiving = True
        try:
            # The receive loop, here rather than in a coroutine of its own (one frame less per open
            # conversation). No variable holds the frame being handled while the next one is
            # awaited: an idle conversation does not keep its last transcript and the history in it.
            while True:
                ended = _on_message(await ws.receive(), conversation, outbox, peer)
                if ended is not None:
                    reason = ended
                    break
        except asyncio.CancelledError:
            # The guard interrupted the loop (a missed deadline, shutdown): absorb exactly that
            # cancellation; any other one goes on.
            task = asyncio.current_task()
            if not peer.interrupted or (task is not None and task.uncancel() > 0):
                raise
        finally:
            peer.receiving = False
    finally:
        peer.stop()
        if peer.reason is not None:
            reason = peer.reason
        if state.shutting_down:
            reason = "shutdown"
        closing = asyncio.get_running_loop().create_task(_end(state, conversation, ws, peer, reason))
        state.closing.add(closing)
        closing.add_done_callback(state.closing.discard)
        await asyncio.shield(closing)
    return ws


async def _end(
    state: ChannelState, conversation: Conversation, ws: web.WebSocketResponse, peer: PeerGuard, reason: str
) -> None:
    try:
        await conversation.close(reason)
    finally:
        state.conversations.pop(conversation, None)
        state.peers.pop(ws, None)
        if not state.conversations:
            state.idle.set()
        with contextlib.suppress(Exception):
            server_close = state.socket_closes.get(ws)
            if server_close is not None:
                await server_close
            elif not ws.closed:
                if reason == "shutdown":
                    peer.close_code, peer.close_message = WSCloseCode.GOING_AWAY, "server shutdown"
                await peer.close_socket()
        peer.mark_finished()


_CLOSING = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


def _on_message(msg: WSMessage, conversation: Conversation, outbox: Outbox, peer: PeerGuard) -> str | None:
    """Handle one received message; return why the conversation ends, or ``None`` to go on."""
    kind = msg.type
    if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
        data = msg.data
    elif kind is WSMsgType.PING:
        outbox.post(Frame(None, ws_pong=msg.data))
        return None
    elif kind is WSMsgType.PONG:
        peer.on_pong(msg.data)
        return None
    elif kind is WSMsgType.ERROR:
        # aiohttp records 1006 once its close handshake fails; the error itself keeps 1009.
        if getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
            conversation.log.warning("frame_too_big", error=str(msg.data))
            return "too_big"
        conversation.log.warning("socket_error", error=str(msg.data))
        return "error"
    elif kind in _CLOSING:
        return "disconnect"
    else:
        return None
    try:
        frame = parse_frame(data)
    except EventIdOutOfRange as exc:
        conversation.log.error("event_id_out_of_range", error=str(exc), size=len(data))
        return None
    except ProtocolError as exc:
        conversation.log.warning("frame_malformed", error=str(exc), size=len(data))
        return None
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
    return None
