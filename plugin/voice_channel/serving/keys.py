"""Typed application keys and the state they hold (no singletons: everything hangs off the app)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from voice_channel.channel.outbox import OutboxLimits
from voice_channel.channel.pings import PingWheel
from voice_channel.serving.metrics import NO_METRICS, Metrics

if TYPE_CHECKING:
    from voice_channel.channel.conversation import Conversation
    from voice_channel.channel.peer import PeerGuard
    from voice_channel.elevenlabs.tokens import TokenService
    from voice_channel.plugins import PluginHooks, RuntimeEntry
    from voice_channel.runtime import Runtime
    from voice_channel.serving.drain import Drain
    from voice_channel.settings import Settings

__all__ = ["DRAIN", "STATE", "TOKENS", "ChannelState"]


@dataclass(eq=False)
class ChannelState:
    settings: Settings
    hooks: PluginHooks
    runtime_entry: RuntimeEntry
    #: Set once the runtime has started (``cleanup_ctx``); ``/readyz`` reports ready from then on
    #: (when the runtime itself says it can take a turn, see :mod:`voice_channel.serving.health`).
    runtime: Runtime | None = None
    #: Open conversations and their sockets, closed with 1001 on shutdown.
    conversations: dict[Conversation, web.WebSocketResponse] = field(default_factory=dict)
    #: Conversation closes in progress. They run as tasks owned by the app, not by the request
    #: handler: aiohttp cancels a handler once its transport is gone, and a close cut short
    #: would leave the runtime session open. Shutdown awaits them.
    closing: set[asyncio.Task[None]] = field(default_factory=set)
    #: Close handshakes started by the server outside a handler (shutdown, when the handler was
    #: not receiving); a handler waits for its socket's one, because returning from the handler
    #: drops the transport before the peer's reply.
    socket_closes: dict[web.WebSocketResponse, asyncio.Task[bool]] = field(default_factory=dict)
    #: Set while no conversation is open (a drain waits for it).
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    #: Counters and histograms (:mod:`voice_channel.serving.metrics`); a no-op when ``metrics.enabled`` is off.
    metrics: Metrics = NO_METRICS
    #: Draining (SIGTERM, :mod:`voice_channel.serving.drain`): open conversations go on, no new one is taken.
    draining: bool = False
    #: The guard of each open socket (deadlines, and the close at shutdown: :mod:`voice_channel.channel.peer`).
    peers: dict[web.WebSocketResponse, PeerGuard] = field(default_factory=dict)
    shutting_down: bool = False
    started_at: float = field(default_factory=time.time)
    #: The WebSocket pings of every open socket, on one timer (:mod:`voice_channel.channel.pings`).
    pings: PingWheel = field(init=False)
    #: Every socket's outbox bounds (one object for all: they come from the settings).
    outbox_limits: OutboxLimits = field(init=False)

    def __post_init__(self) -> None:
        self.idle.set()
        server = self.settings.server
        self.pings = PingWheel(server.heartbeat_s)
        self.outbox_limits = OutboxLimits(server.outbox_max_frames, server.outbox_max_bytes, server.write_timeout_s)


STATE = web.AppKey("voice_channel_state", ChannelState)
#: The app's drain on SIGTERM, if it drains (``create_app(..., drain=True)``): :mod:`voice_channel.serving.drain`.
DRAIN: web.AppKey[Drain] = web.AppKey("voice_channel_drain")
#: The token endpoint's state (SDK client, rate limiter): :mod:`voice_channel.elevenlabs.tokens`.
TOKENS: web.AppKey[TokenService] = web.AppKey("voice_channel_tokens")
