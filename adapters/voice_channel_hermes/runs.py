"""Which Hermes agent runs of voice calls are still going, from Hermes's own run hooks.

Hermes runs an agent turn (``AIAgent.run_conversation``) in a worker thread. A ``/stop`` cancels the
gateway's processing task and frees the session at once, but the thread goes on for a moment: it
closes the LLM stream and then persists the interrupted turn (the caller's message and the partial
answer) to the session's transcript. A message submitted in between is built on a transcript
without that answer, and Hermes merges the two user messages into one.

:class:`RunTracker` is registered for two of Hermes's plugin hooks that run in that thread:
``pre_llm_call`` (a turn starts) and ``on_session_end`` ("fired at the very end of every
run_conversation call", after the turn was persisted, interrupted or not). Both carry the turn's
``turn_id``; the session key comes from Hermes's session context variables, which the gateway
binds for the thread. :meth:`RunTracker.wait_finished` lets the adapter wait, without polling,
until no run of a chat is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from voice_channel_hermes import PLATFORM

__all__ = ["RunTracker", "voice_session_key"]


def voice_session_key() -> str | None:
    """The session key of the run calling a hook, if it is a voice call's."""
    from gateway.session_context import get_session_env

    if get_session_env("HERMES_SESSION_PLATFORM", "") != PLATFORM:
        return None
    return get_session_env("HERMES_SESSION_KEY", "") or None


class RunTracker:
    """Hermes agent runs in flight per session key (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, set[str]] = {}
        #: Sessions whose latest LLM request failed (the run then ends with Hermes's error text).
        self._failed: set[str] = set()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    # --- Hermes hooks (called in the agent's thread) -------------------------------------------------

    def on_run_start(self, turn_id: str = "", **_: Any) -> None:
        """``pre_llm_call``: a turn of a voice session started."""
        key = voice_session_key()
        if key is not None:
            with self._lock:
                self._running.setdefault(key, set()).add(turn_id or str(threading.get_ident()))
                self._failed.discard(key)

    def on_api_error(self, **_: Any) -> None:
        """``api_request_error``: an LLM request of a voice session failed (it may be retried)."""
        key = voice_session_key()
        if key is not None:
            with self._lock:
                self._failed.add(key)

    def on_api_ok(self, **_: Any) -> None:
        """``post_api_request``: an LLM request of a voice session succeeded (a retry, perhaps)."""
        key = voice_session_key()
        if key is not None:
            with self._lock:
                self._failed.discard(key)

    def on_run_end(self, turn_id: str = "", **_: Any) -> None:
        """``on_session_end``: a turn of a voice session ended and was persisted."""
        key = voice_session_key()
        if key is not None:
            self._finish(key, turn_id or str(threading.get_ident()))

    # --- the adapter's side ----------------------------------------------------------------------------

    def failed(self, session_key: str) -> bool:
        """The latest LLM request of the session's run failed: what Hermes delivers now is its error text."""
        with self._lock:
            return session_key in self._failed

    def running(self, session_key: str) -> bool:
        with self._lock:
            return bool(self._running.get(session_key))

    async def wait_finished(self, session_key: str, timeout: float) -> bool:
        """Wait until no agent run of ``session_key`` is left; False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._running.get(session_key):
                return True
            self._waiters.setdefault(session_key, []).append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiters = self._waiters.get(session_key, [])
                with contextlib.suppress(ValueError):
                    waiters.remove((loop, future))
                if not waiters:
                    self._waiters.pop(session_key, None)
        return True

    def forget(self, session_key: str) -> None:
        """Stop waiting for the runs of ``session_key`` (they never reported their end)."""
        with self._lock:
            self._running.pop(session_key, None)
            waiters = self._waiters.pop(session_key, [])
        self._wake(waiters)

    # --- internals ----------------------------------------------------------------------------------------

    def _finish(self, session_key: str, turn_id: str) -> None:
        with self._lock:
            running = self._running.get(session_key)
            if running is None:
                return
            running.discard(turn_id)
            if running:
                return
            del self._running[session_key]
            waiters = self._waiters.pop(session_key, [])
        self._wake(waiters)

    @staticmethod
    def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
