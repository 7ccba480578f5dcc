"""The aiohttp application: ``create_app(settings)``, standalone or mounted in a host's app.

Standalone::

    app = create_app(load_settings())
    web.run_app(app)

Mounted in a host's application (routes become ``/voice/ws``, ``/voice/healthz``, ``/voice/api/token``
and, with ``ui.enabled``, the page at ``/voice/``; the runtime starts and stops with the host's app)::

    host.add_subapp("/voice", create_app(settings, pm))

Under gunicorn, several worker processes each run one app (:func:`app_from_environment`, settings from
the environment and ``VOICE_CHANNEL_CONFIG``)::

    gunicorn -c python:voice_channel.gunicorn_conf 'voice_channel.app:app_from_environment()'

Routes: ``settings.server.path`` (the Speech Engine WebSocket), ``/livez``, ``/readyz``, ``/healthz`` and ``/status``
(:mod:`voice_channel.serving.health`), ``/api/token`` (conversation credentials for a browser page, see
:mod:`voice_channel.elevenlabs.tokens`), ``/metrics`` with ``metrics.enabled``
(:mod:`voice_channel.serving.metrics`) and, with ``ui.enabled``, the page at ``/``
(:mod:`voice_channel.elevenlabs.page`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pluggy
import structlog
from aiohttp import web

from voice_channel.channel.endpoint import speech_engine_endpoint
from voice_channel.elevenlabs.cors import token_preflight
from voice_channel.elevenlabs.page import add_ui_routes
from voice_channel.elevenlabs.shared_ratelimit import redis_context
from voice_channel.elevenlabs.tokens import TokenService, elevenlabs_client_context, token_endpoint
from voice_channel.extras import install_hint
from voice_channel.logging import setup_logging
from voice_channel.plugins import PluginHooks, RuntimeEntry, get_plugin_manager
from voice_channel.serving.drain import Drain, close_conversations
from voice_channel.serving.gc_policy import apply_gc_policy
from voice_channel.serving.health import HEALTH_PATHS, add_health_routes
from voice_channel.serving.keys import DRAIN, STATE, TOKENS, ChannelState
from voice_channel.serving.metrics import METRICS_PATH, NO_METRICS, PrometheusMetrics, metrics_endpoint
from voice_channel.settings import Settings, SettingsError, build_settings_class, load_settings

__all__ = ["CONFIG_ENV", "TOKEN_PATH", "app_from_environment", "create_app", "resolve_runtime"]

log = structlog.get_logger("voice_channel.app")

#: Where a browser page gets its conversation credentials.
TOKEN_PATH = "/api/token"
#: The settings file of :func:`app_from_environment` (the environment has priority over it).
CONFIG_ENV = "VOICE_CHANNEL_CONFIG"


def resolve_runtime(settings: Settings, hooks: PluginHooks) -> RuntimeEntry:
    """The registered runtime named by ``settings.runtime``; a clear error if there is none."""
    runtimes = hooks.runtimes()
    entry = runtimes.get(settings.runtime)
    if entry is None:
        known = ", ".join(sorted(runtimes)) or "none"
        raise SettingsError(
            f"setting 'runtime': unknown runtime {settings.runtime!r}; installed runtimes: {known}"
            f" (a runtime adapter may need its extra; for example, {install_hint('openclaw')})"
        )
    return entry


def create_app(settings: Settings, pm: pluggy.PluginManager | None = None, *, drain: bool = False) -> web.Application:
    """Build the voice channel application.

    :param settings: loaded settings (see :func:`voice_channel.settings.load_settings`).
    :param pm: plugin manager; by default the built-ins plus installed plugins.
    :param drain: keep a :class:`~voice_channel.serving.drain.Drain` in ``app[DRAIN]``, run before shutting down by
        ``voice-channel serve`` and under gunicorn (what a standalone server does on SIGTERM). Off, open
        conversations are closed with 1001 as soon as the app shuts down.
    :raises SettingsError: the configured runtime is not registered.
    """
    hooks = PluginHooks(pm if pm is not None else get_plugin_manager())
    entry = resolve_runtime(settings, hooks)
    taken = {*HEALTH_PATHS, TOKEN_PATH} | ({"/"} if settings.ui.enabled else set())
    taken |= {METRICS_PATH} if settings.metrics.enabled else set()
    if settings.server.path in taken or (settings.ui.enabled and settings.server.path.startswith("/static/")):
        raise SettingsError(f"setting 'server.path': {settings.server.path!r} is taken by another route; use e.g. /ws")
    metrics = PrometheusMetrics() if settings.metrics.enabled else NO_METRICS
    app = web.Application()
    app[STATE] = ChannelState(settings=settings, hooks=hooks, runtime_entry=entry, metrics=metrics)
    app[TOKENS] = TokenService(settings, hooks, metrics)
    if drain:
        app[DRAIN] = Drain(settings.server.drain_timeout_s)
    app.router.add_get(settings.server.path, speech_engine_endpoint)
    add_health_routes(app)
    app.router.add_get(TOKEN_PATH, token_endpoint, allow_head=False)  # a HEAD must not spend a token
    app.router.add_route("OPTIONS", TOKEN_PATH, token_preflight)  # a page on an allowed other origin
    if settings.metrics.enabled:
        app.router.add_get(METRICS_PATH, metrics_endpoint(settings.metrics.allowed_networks))
    if settings.ui.enabled:
        add_ui_routes(app)
    # Redis first: a start-up check that fails leaves nothing else started to be unwound.
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(_runtime_context)
    app.cleanup_ctx.append(elevenlabs_client_context)
    app.on_shutdown.append(_close_conversations)
    return app


def app_from_environment() -> web.Application:
    """The app of one gunicorn worker: settings from ``VOICE_CHANNEL_*`` variables and the file named by
    ``VOICE_CHANNEL_CONFIG`` (YAML or TOML), logging configured once for this worker, draining on SIGTERM.

    ``gunicorn -c python:voice_channel.gunicorn_conf 'voice_channel.app:app_from_environment()'``
    """
    pm = get_plugin_manager()
    settings_cls = build_settings_class(PluginHooks(pm).settings_sections())
    settings = load_settings(config_file=os.environ.get(CONFIG_ENV) or None, settings_cls=settings_cls)
    setup_logging(settings)
    app = create_app(settings, pm, drain=True)
    if settings.server.gc_policy:
        # Appended after create_app's cleanup contexts, so it runs once the runtime has started.
        app.on_startup.append(_apply_gc_policy)
    return app


async def _apply_gc_policy(app: web.Application) -> None:
    apply_gc_policy()


async def _runtime_context(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    # A host may start its application again after stopping it: this app serves again, too.
    state.shutting_down = state.draining = False
    if DRAIN in app:
        app[DRAIN].rearm()
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

    A draining server has already done this, at the end of its drain (:mod:`voice_channel.serving.drain`).
    """
    await close_conversations(app[STATE])
