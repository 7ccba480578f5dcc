"""Draining inside a gunicorn worker (aiohttp's ``GunicornWebWorker``), installed by ``voice_channel.gunicorn_conf``.

aiohttp's worker stops on SIGTERM by leaving its serving loop and calling ``AppRunner.cleanup()``, which
stops reading from every open connection at once: a conversation could not take another turn. So the
worker's SIGTERM is taken over here: stop accepting on the listening socket that the workers share (the
kernel hands new connections to the other workers), run the app's :class:`~voice_channel.serving.drain.Drain`
while the worker goes on serving (and reporting to the master), then stop the worker the way its own
handler would.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog

from voice_channel.serving.keys import DRAIN, STATE

__all__ = ["cut_drain", "install_drain"]

log = structlog.get_logger("voice_channel.workers")


def install_drain(worker: Any) -> None:
    """Replace the worker's SIGTERM handler with drain-then-stop (a second SIGTERM cuts the drain)."""
    app = worker.wsgi
    drain = app.get(DRAIN) if hasattr(app, "get") else None
    loop: asyncio.AbstractEventLoop | None = getattr(worker, "loop", None)
    if drain is None or loop is None:
        return
    draining: list[asyncio.Task[None]] = []

    def on_sigterm() -> None:
        if draining:
            drain.cut_short()
            return
        draining.append(loop.create_task(_drain_then_stop(worker, app)))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


def cut_drain(worker: Any) -> None:
    """A quick shutdown (gunicorn's ``worker_int``): stop waiting for open conversations."""
    app = getattr(worker, "wsgi", None)
    drain = app.get(DRAIN) if hasattr(app, "get") else None
    if drain is not None:
        drain.cut_short()


async def _drain_then_stop(worker: Any, app: Any) -> None:
    loop = asyncio.get_running_loop()
    try:
        for listener in worker.sockets:
            # Stop accepting here; the socket stays open for the other workers (aiohttp closes this
            # process's copy at cleanup).
            loop.remove_reader(listener.fileno())
        await app[DRAIN].run(app[STATE])
    except Exception:
        log.exception("drain_failed")
    finally:
        worker.handle_exit(signal.SIGTERM, None)  # alive = False: aiohttp's worker now shuts down
        wake = getattr(worker, "_notify_waiter_done", None)
        if wake is not None:
            wake()  # at once, not at its next once-a-second check
