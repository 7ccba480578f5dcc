"""Draining a server on SIGTERM, so that a restart cuts as few conversations as it can.

One rule, wherever the server runs (``voice-channel serve``, each gunicorn worker, a Kubernetes pod):

1. **Stop taking conversations.** The listening socket is closed (other workers and hosts take new
   conversations; a request still arriving on an open connection gets 503), and ``/readyz`` says
   ``draining``.
2. **Let the open ones go on**, turns and all, until each ends or ``server.drain_timeout_s`` passes.
3. **Close the rest** with 1001 Going Away: their turns are cancelled and awaited, within
   ``server.shutdown_timeout_s`` (the shutdown every app has, :func:`voice_channel.app.create_app`).

So a whole shutdown takes at most ``drain_timeout_s + shutdown_timeout_s``: gunicorn's
``graceful_timeout`` and Kubernetes' ``terminationGracePeriodSeconds`` must be longer (the shipped
``voice_channel.gunicorn_conf`` derives the former). A quick shutdown (SIGINT, gunicorn's
SIGQUIT, a second SIGTERM, the supervisor's stdin closing) cuts the drain short: step 3 at once.

Draining is for standalone servers: ``create_app(..., drain=True)``. An application mounted in a
host's app shuts down when the host says (no drain) unless the host turns it on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from voice_channel.keys import ChannelState

__all__ = ["Drain"]

log = structlog.get_logger("voice_channel.drain")

#: gunicorn kills a worker that has not reported for ``timeout`` seconds (30 by default); a drain
#: reports at least this often.
HEARTBEAT_S = 1.0


class Drain:
    """The drain of one server process (see the module docstring).

    :param timeout_s: how long open conversations may go on (``server.drain_timeout_s``); 0 skips it.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        #: Called at least every :data:`HEARTBEAT_S` while draining: gunicorn's ``worker.notify``,
        #: set by ``voice_channel.gunicorn_conf`` (the worker's own loop has stopped reporting by then).
        self.heartbeat: Callable[[], None] | None = None
        self._cut = asyncio.Event()

    def cut_short(self) -> None:
        """A quick shutdown: stop waiting (or do not start) and close what is open."""
        self._cut.set()

    async def run(self, state: ChannelState) -> None:
        """Mark the server draining, then wait until no conversation is open, the timeout, or a cut."""
        state.draining = True
        open_now = len(state.conversations)
        if not open_now or self.timeout_s <= 0 or self._cut.is_set():
            return
        started = time.monotonic()
        deadline = started + self.timeout_s
        log.info("draining", conversations=open_now, timeout_s=self.timeout_s)
        cut = asyncio.ensure_future(self._cut.wait())
        idle = asyncio.ensure_future(state.idle.wait())
        try:
            while not (cut.done() or idle.done()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self.heartbeat is not None:
                    self.heartbeat()
                await asyncio.wait({cut, idle}, timeout=min(HEARTBEAT_S, remaining), return_when="FIRST_COMPLETED")
        finally:
            for waiter in (cut, idle):
                waiter.cancel()
            await asyncio.gather(cut, idle, return_exceptions=True)
        log.info(
            "drained",
            waited_s=round(time.monotonic() - started, 3),
            still_open=len(state.conversations),
            cut_short=self._cut.is_set(),
        )
