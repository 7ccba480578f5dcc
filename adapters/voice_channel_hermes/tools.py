"""Hermes's tool runs of a voice call, as :class:`~voice_channel.runtime.ToolActivity` for progress speech.

Hermes calls its ``pre_tool_call`` plugin hooks before every tool call and its ``post_tool_call``
hooks after it (also for a call a hook blocked, or one an approval denied), in the agent's worker
thread (or a tool pool thread, which Hermes gives the run's context variables), with the tool's
name and its ``tool_call_id``. :class:`ToolEvents` is registered for both: for a call of a voice
session (Hermes's session context says which) it hands a ``START`` or ``END`` to the adapter's
event loop, where the adapter routes it to the reply the call is running in. Observers only: they
never answer anything to Hermes (the policy that asks for confirmations is a separate hook,
:class:`~voice_channel_hermes.policy.ToolPolicy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from voice_channel import ToolActivity, ToolPhase
from voice_channel_hermes.runs import voice_session_key

__all__ = ["ToolEvents"]

#: Receives a voice session's tool activity, on the adapter's loop: ``deliver(session_key, activity)``.
Deliver = Callable[[str, ToolActivity], None]


class ToolEvents:
    """Hermes's ``pre_tool_call``/``post_tool_call`` hooks → the adapter (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sink: tuple[asyncio.AbstractEventLoop, Deliver] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        """Deliver voice sessions' tool activity to ``deliver`` on ``loop`` (the adapter connected)."""
        with self._lock:
            self._sink = (loop, deliver)

    def detach(self) -> None:
        """Deliver nothing any more (the adapter disconnected)."""
        with self._lock:
            self._sink = None

    # --- Hermes hooks (called in the agent's threads) ------------------------------------------------

    def on_start(self, tool_name: str = "", tool_call_id: str = "", **_: Any) -> None:
        """``pre_tool_call``: a tool of some session is about to run. Answers nothing (an observer)."""
        self._emit(ToolPhase.START, tool_name, tool_call_id)

    def on_end(self, tool_name: str = "", tool_call_id: str = "", **_: Any) -> None:
        """``post_tool_call``: that tool is done (ran, failed, or was blocked)."""
        self._emit(ToolPhase.END, tool_name, tool_call_id)

    def _emit(self, phase: ToolPhase, tool_name: str, tool_call_id: str) -> None:
        with self._lock:
            sink = self._sink
        if sink is None:
            return
        key = voice_session_key()
        if key is None:
            return
        loop, deliver = sink
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            loop.call_soon_threadsafe(
                deliver, key, ToolActivity(phase, str(tool_name or ""), str(tool_call_id or "") or None)
            )
