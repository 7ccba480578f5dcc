"""Running the application: bind, report readiness, shut down gracefully on SIGTERM/SIGINT.

Shutdown order (aiohttp's runner does the middle part): stop listening; close every open
conversation (its turns cancelled and awaited, the socket closed with 1001 Going Away); wait up
to ``server.shutdown_timeout_s`` for handlers; stop the runtime (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from voice_channel.settings import Settings

__all__ = ["running_app", "serve_until_stopped"]

log = structlog.get_logger("voice_channel.server")


@contextlib.asynccontextmanager
async def running_app(app: web.Application, settings: Settings) -> AsyncIterator[int]:
    """Serve ``app`` on the configured host and port; yield the bound port; clean up on exit."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.server.shutdown_timeout_s
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        port = int(runner.addresses[0][1])
        yield port
    finally:
        await runner.cleanup()


async def serve_until_stopped(
    app: web.Application,
    settings: Settings,
    *,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with running_app(app, settings) as port:
            log.info("listening", host=settings.server.host, port=port, path=settings.server.path)
            if on_ready is not None:
                on_ready(port)
            await stop.wait()
            log.info("shutting_down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("stopped")
