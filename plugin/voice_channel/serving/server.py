"""Running the application: bind, report readiness, shut down gracefully on SIGTERM/SIGINT.

Shutdown order (aiohttp's runner does the middle part): stop listening; if the app drains
(:mod:`voice_channel.serving.drain`), let open conversations go on for up to ``server.drain_timeout_s``;
close every conversation still open (its turns cancelled and awaited, the socket closed with 1001
Going Away); wait up to ``server.shutdown_timeout_s`` for handlers; stop the runtime (``cleanup_ctx``).

SIGTERM drains; SIGINT (Ctrl-C), a second SIGTERM or standard input closing skips or cuts the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from voice_channel.channel.auth import protection
from voice_channel.serving.gc_policy import apply_gc_policy
from voice_channel.serving.keys import DRAIN, STATE
from voice_channel.settings import Settings

__all__ = ["running_app", "serve_until_stopped", "watch_stdin_eof"]

log = structlog.get_logger("voice_channel.server")


@contextlib.asynccontextmanager
async def running_app(app: web.Application, settings: Settings) -> AsyncIterator[int]:
    """Serve ``app`` on the configured host and port; yield the bound port; drain (if the app drains) and
    clean up on exit."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout_s,
        # aiohttp's default (an hour) lets silent sockets that never finish a request hold file descriptors.
        keepalive_timeout=settings.server.idle_timeout_s,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port)
        await site.start()
        port = int(runner.addresses[0][1])
        yield port
        drain = app.get(DRAIN)
        if drain is not None:
            for started in list(runner.sites):
                await started.stop()  # no new connections; open ones (conversations) go on
            await drain.run(app[STATE])
    finally:
        await runner.cleanup()


def watch_stdin_eof(stop: asyncio.Event) -> Callable[[], None]:
    """Set ``stop`` when standard input reaches end of file; return a function that stops watching.

    For a supervisor that keeps a pipe to our stdin and never writes to it (the OpenClaw plugin
    does): when the supervisor dies, even by SIGKILL, the pipe closes and the server shuts down
    instead of living on as an orphan. A dead supervisor took the other ends of our stdout and
    stderr with it, so if the first log line fails, output goes to /dev/null from then on: the
    shutdown must not fail on a broken pipe. (Whether the parent is alive cannot be asked
    reliably at this point: the pipe closes before a dying parent's children are re-parented.)

    The event loop watches file descriptor 0 itself and reads it only when it is readable, with
    ``os.read``: no thread, no ``sys.stdin`` buffer. A thread blocked in a buffered read of stdin
    makes the interpreter abort at exit ("_enter_buffered_busy", SIGABRT) when the server stops
    for another reason (SIGTERM) while the pipe is still open. The descriptor stays blocking (a
    terminal's flags are shared with the shell): the loop only reads once data or EOF is there.
    """
    loop = asyncio.get_running_loop()
    fd = 0
    watching = True

    def on_eof() -> None:
        stop.set()  # first: whatever happens below, the server shuts down
        try:
            log.info("stdin_closed", action="shutting down")
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)

    def stop_watching() -> None:
        nonlocal watching
        if watching:
            watching = False
            loop.remove_reader(fd)

    def on_readable() -> None:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. EIO from a terminal that went away: as good as closed
            data = b""
        if not data:
            stop_watching()
            on_eof()

    try:
        loop.add_reader(fd, on_readable)
    except (OSError, ValueError):
        # Not open, or not pollable (a regular file, /dev/null): nothing can ever be written to
        # it by a supervisor, so it is at its end already.
        watching = False
        loop.call_soon(on_eof)
    return stop_watching


async def serve_until_stopped(
    app: web.Application,
    settings: Settings,
    *,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    exit_on_stdin_eof: bool = False,
    ignore_sigterm_once_stopped: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set, or stdin ends), then shut down gracefully.

    Once listening (the runtime started), the process's garbage-collector policy is applied
    (:func:`voice_channel.serving.gc_policy.apply_gc_policy`) unless ``server.gc_policy`` is off.

    ``ignore_sigterm_once_stopped`` is for the process that exits when this returns (``serve``): a
    supervisor may send SIGTERM more than once (to the process group, then to the child), and one
    arriving after the handlers are gone would kill the process instead of letting it exit 0.
    """
    stop = stop or asyncio.Event()
    drain = app.get(DRAIN)

    def quick_stop() -> None:
        if drain is not None:
            drain.cut_short()
        stop.set()

    def graceful_stop() -> None:
        if stop.is_set():  # a second SIGTERM: do not wait for the drain
            quick_stop()
        stop.set()

    eof_watch: asyncio.Task[None] | None = None
    stop_watching_stdin: Callable[[], None] | None = None
    if exit_on_stdin_eof:
        # The supervisor is gone: nobody is waiting for a graceful drain.
        eof = asyncio.Event()
        stop_watching_stdin = watch_stdin_eof(eof)
        eof_watch = asyncio.ensure_future(_on_event(eof, quick_stop))
    loop = asyncio.get_running_loop()
    installed = []
    for sig, handler in ((signal.SIGTERM, graceful_stop), (signal.SIGINT, quick_stop)):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        async with running_app(app, settings) as port:
            if settings.server.gc_policy:  # everything is loaded and started: see voice_channel.serving.gc_policy
                apply_gc_policy()
            log.info(
                "listening",
                host=settings.server.host,
                port=port,
                path=settings.server.path,
                protected_by=protection(settings),
            )
            if on_ready is not None:
                on_ready(port)
            await stop.wait()
            log.info("shutting_down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            if sig == signal.SIGTERM and ignore_sigterm_once_stopped:
                signal.signal(sig, signal.SIG_IGN)  # stopping already; SIGKILL still forces it
        if eof_watch is not None:
            eof_watch.cancel()
            await asyncio.gather(eof_watch, return_exceptions=True)
        if stop_watching_stdin is not None:
            stop_watching_stdin()
    log.info("stopped")


async def _on_event(event: asyncio.Event, action: Callable[[], None]) -> None:
    await event.wait()
    action()
