"""The aiohttp application: ``create_app(settings)``, standalone or mounted in a host's app.

Standalone::

    app = create_app(load_settings())
    web.run_app(app)

Mounted in a host's application (routes become ``/voice/ws``, ``/voice/healthz``, ``/voice/api/token``
and, with ``ui.enabled``, the page at ``/voice/``; the runtime starts and stops with the host's app)::

    host.add_subapp("/voice", create_app(settings, pm))

Routes: ``settings.server.path`` (the Speech Engine WebSocket), ``/livez``, ``/readyz`` and ``/healthz``
(:mod:`voice_channel.health`), ``/api/token`` (conversation credentials for a browser page, see
:mod:`voice_channel.tokens`) and, with ``ui.enabled``, the page at ``/`` (:mod:`voice_channel.ui`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pluggy
import structlog
from aiohttp import WSCloseCode, web

from voice_channel.endpoint import speech_engine_endpoint
from voice_channel.health import HEALTH_PATHS, add_health_routes
from voice_channel.keys import STATE, TOKENS, ChannelState
from voice_channel.plugins import PluginHooks, RuntimeEntry, get_plugin_manager
from voice_channel.settings import Settings, SettingsError
from voice_channel.tokens import TokenService, elevenlabs_client_context, token_endpoint
from voice_channel.ui import add_ui_routes

__all__ = ["TOKEN_PATH", "create_app", "resolve_runtime"]

log = structlog.get_logger("voice_channel.app")

#: Where a browser page gets its conversation credentials.
TOKEN_PATH = "/api/token"


def resolve_runtime(settings: Settings, hooks: PluginHooks) -> RuntimeEntry:
    """The registered runtime named by ``settings.runtime``; a clear error if there is none."""
    runtimes = hooks.runtimes()
    entry = runtimes.get(settings.runtime)
    if entry is None:
        known = ", ".join(sorted(runtimes)) or "none"
        raise SettingsError(
            f"setting 'runtime': unknown runtime {settings.runtime!r}; installed runtimes: {known}"
            " (a runtime adapter may need its extra, e.g. pip install 'voice-channel[hermes]')"
        )
    return entry


def create_app(settings: Settings, pm: pluggy.PluginManager | None = None) -> web.Application:
    """Build the voice channel application.

    :param settings: loaded settings (see :func:`voice_channel.settings.load_settings`).
    :param pm: plugin manager; by default the built-ins plus installed plugins.
    :raises SettingsError: the configured runtime is not registered.
    """
    hooks = PluginHooks(pm if pm is not None else get_plugin_manager())
    entry = resolve_runtime(settings, hooks)
    taken = {*HEALTH_PATHS, TOKEN_PATH} | ({"/"} if settings.ui.enabled else set())
    if settings.server.path in taken or (settings.ui.enabled and settings.server.path.startswith("/static/")):
        raise SettingsError(f"setting 'server.path': {settings.server.path!r} is taken by another route; use e.g. /ws")
    app = web.Application()
    app[STATE] = ChannelState(settings=settings, hooks=hooks, runtime_entry=entry)
    app[TOKENS] = TokenService(settings, hooks)
    app.router.add_get(settings.server.path, speech_engine_endpoint)
    add_health_routes(app)
    app.router.add_get(TOKEN_PATH, token_endpoint, allow_head=False)  # a HEAD must not spend a token
    if settings.ui.enabled:
        add_ui_routes(app)
    app.cleanup_ctx.append(_runtime_context)
    app.cleanup_ctx.append(elevenlabs_client_context)
    app.on_shutdown.append(_close_conversations)
    return app


async def _runtime_context(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    runtime = state.runtime_entry.factory(state.settings)
    await runtime.start()
    state.runtime = runtime
    log.info("runtime_started", runtime=state.runtime_entry.name)
    try:
        yield
    finally:
        state.runtime = None
        await runtime.aclose()
        log.info("runtime_stopped", runtime=state.runtime_entry.name)


async def _close_conversations(app: web.Application) -> None:
    """Graceful shutdown: cancel and await every turn, then close each socket with 1001.

    Each handler closes its own socket (its receive loop is interrupted), so that the close
    handshake completes and the peer sees 1001.
    """
    state = app[STATE]
    state.shutting_down = True
    loop = asyncio.get_running_loop()
    handlers: list[asyncio.Future[None]] = []
    for conversation, ws in list(state.conversations.items()):
        await conversation.close("shutdown")
        peer = state.peers.get(ws)
        if peer is not None and peer.shut_down():
            handlers.append(peer.finished)
        elif not ws.closed:
            state.socket_closes[ws] = loop.create_task(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            )
    waiting = {*state.closing, *state.socket_closes.values(), *handlers}
    if waiting:
        await asyncio.wait(waiting, timeout=state.settings.server.shutdown_timeout_s)
    for task in state.socket_closes.values():
        task.cancel()
    await asyncio.gather(*state.socket_closes.values(), return_exceptions=True)
