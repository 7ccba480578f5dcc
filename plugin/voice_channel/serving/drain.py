"""Draining a server on SIGTERM, so that a restart cuts as few conversations as it can.

One rule, wherever the server runs (``voice-channel serve``, each gunicorn worker, a Kubernetes pod):

1. **Stop taking conversations.** This process stops accepting connections (other workers and hosts
   take new conversations; a request still arriving on an open keep-alive connection gets 503), and
   ``/readyz`` says ``draining``.
2. **Let the open ones go on**, turns and all, until each ends or ``server.drain_timeout_s`` passes.
3. **Close the rest** with 1001 Going Away (:func:`close_conversations`, the shutdown every app has):
   their turns are cancelled and awaited and the close handshakes completed, within
   ``server.shutdown_timeout_s``.

So a whole shutdown takes at most ``drain_timeout_s + shutdown_timeout_s`` (plus the runtime's own
stop): gunicorn's ``graceful_timeout`` and Kubernetes' ``terminationGracePeriodSeconds`` must be
longer (the shipped ``voice_channel.gunicorn_conf`` derives the former). A quick shutdown (SIGINT,
gunicorn's SIGQUIT, a second SIGTERM, the supervisor's stdin closing) cuts the drain short: step 3 at once.

All three run *before* aiohttp's own shutdown (``AppRunner.cleanup``), which stops reading from every
open connection, WebSockets included: a conversation can only go on before it, and a close handshake
only completes before it (a peer behind nginx would otherwise often see the connection drop, 1006,
instead of the 1001). ``voice-channel serve``
does it in :func:`voice_channel.serving.server.running_app`; under gunicorn, ``voice_channel.gunicorn_conf``
does it on the worker's SIGTERM before letting aiohttp's worker stop.

Draining is for standalone servers: ``create_app(..., drain=True)``. An application mounted in a
host's app shuts down when the host says (no drain) unless the host turns it on.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import WSCloseCode

from voice_channel.tasks import cancel_and_wait

if TYPE_CHECKING:
    from voice_channel.serving.keys import ChannelState

__all__ = ["Drain", "close_conversations"]

log = structlog.get_logger("voice_channel.drain")


class Drain:
    """The drain of one server process (see the module docstring).

    :param timeout_s: how long open conversations may go on (``server.drain_timeout_s``); 0 skips it.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._cut = asyncio.Event()

    def rearm(self) -> None:
        """Ready for another start of the same app (a host may start its application again after a stop)."""
        self._cut = asyncio.Event()

    def cut_short(self) -> None:
        """A quick shutdown: stop waiting (or do not start) and close what is open."""
        self._cut.set()

    async def run(self, state: ChannelState) -> None:
        """Steps 2 and 3 (the caller has stopped accepting connections): drain, then close what is left."""
        await self.wait(state)
        await close_conversations(state)

    async def wait(self, state: ChannelState) -> None:
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
            await asyncio.wait(
                {cut, idle}, timeout=max(0.0, deadline - time.monotonic()), return_when="FIRST_COMPLETED"
            )
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


async def close_conversations(state: ChannelState) -> None:
    """Shut down: cancel and await every turn, then close each socket with 1001 (bounded by
    ``server.shutdown_timeout_s``). Idempotent: a second call finds nothing open.

    Each socket's handler is stopped and closes its socket itself (:class:`~voice_channel.channel.peer.PeerGuard`),
    waiting (bounded) for the peer's close frame: a socket closed by another task while its handler reads
    is dropped right after the 1001 (aiohttp's rule), which a peer behind a proxy sees as an abnormal
    closure. A handler that is no longer reading gets its 1001 from here.
    """
    state.shutting_down = True
    loop = asyncio.get_running_loop()
    timeout_s = state.settings.server.shutdown_timeout_s
    deadline = loop.time() + timeout_s
    opened = list(state.conversations.items())
    # All at once, within the one timeout: a runtime slow to stop (or one that never does) must not
    # hold up the other conversations' turns and 1001s, nor the shutdown past shutdown_timeout_s.
    closes = [loop.create_task(conversation.close("shutdown")) for conversation, _ws in opened]
    for close in closes:
        state.closing.add(close)
        close.add_done_callback(state.closing.discard)
    if closes:
        await asyncio.wait(closes, timeout=timeout_s)
    handlers: list[asyncio.Future[None]] = []
    for _conversation, ws in opened:
        peer = state.peers.get(ws)
        if peer is not None and peer.shut_down():
            handlers.append(peer.finished)
        elif not ws.closed and ws not in state.socket_closes:
            state.socket_closes[ws] = loop.create_task(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            )
    waiting = {*handlers, *state.closing, *state.socket_closes.values()}
    if waiting:
        await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()))
    # The deadline has passed: what is still closing (a session or a hook slower than the bound) is
    # cancelled and awaited here, so that no close outlives the shutdown (nor runs after the runtime stops).
    grace_s = state.settings.turn.cancel_grace_s
    stuck = await cancel_and_wait([*state.closing, *state.socket_closes.values()], grace_s)
    if stuck:
        log.error("close_ignored_cancellation", tasks=len(stuck), grace_s=grace_s)
