"""Tool activity in an OpenAI-compatible stream, as :class:`~voice_channel.runtime.ToolActivity` events.

The channel never runs tools for this runtime: the server does, or nobody does. What the stream can
say about them, and how it is read (for the channel's progress speech):

* a ``tool_calls`` delta with a new call ``id`` (the first delta of each call carries it, the
  function name with it) starts that call; later deltas of the same call only add arguments;
* Hermes Agent's API server runs its tools itself and reports them as named SSE events
  ``event: hermes.tool.progress`` with ``{"tool", "toolCallId", "status": "running" | "completed"}``;
* a call with no end event of its own ends when the server streams text again, or when the
  stream ends (its server is done with it either way).
"""

from __future__ import annotations

import json
from typing import Any

from voice_channel import ToolActivity, ToolPhase

__all__ = ["HERMES_TOOL_EVENT", "ToolCalls"]

#: The named SSE event of Hermes Agent's API server for its own tool runs.
HERMES_TOOL_EVENT = "hermes.tool.progress"


class ToolCalls:
    """The calls open in one streamed reply (see the module docstring)."""

    def __init__(self) -> None:
        #: Open calls: call id → tool name.
        self._open: dict[str, str] = {}
        #: Calls already started, so a repeated id (the same call in both kinds of event) starts once.
        self._seen: set[str] = set()

    def from_delta(self, tool_calls: Any) -> list[ToolActivity]:
        """``START`` for each call that a ``choices[0].delta.tool_calls`` list begins."""
        started = []
        for call in tool_calls if isinstance(tool_calls, list) else []:
            if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
                continue  # a continuation (arguments only) of a call already started
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            name = function.get("name") if isinstance(function.get("name"), str) else ""
            started.extend(self._start(call["id"], name))
        return started

    def from_hermes_event(self, data: str) -> list[ToolActivity]:
        """The ``START`` or ``END`` a ``hermes.tool.progress`` event reports (none if it is malformed)."""
        try:
            payload = json.loads(data)
        except json.JSONDecodeError:
            return []
        if not isinstance(payload, dict):
            return []
        call_id = str(payload.get("toolCallId") or "")
        tool = str(payload.get("tool") or "")
        status = payload.get("status")
        if status == "running" and call_id:
            return self._start(call_id, tool)
        if status == "completed" and call_id in self._open:
            del self._open[call_id]
            return [ToolActivity(ToolPhase.END, tool, call_id)]
        return []

    def end_all(self) -> list[ToolActivity]:
        """``END`` for every call still open (the server talks again, or the stream is over)."""
        ended = [ToolActivity(ToolPhase.END, tool, call_id) for call_id, tool in self._open.items()]
        self._open.clear()
        return ended

    def _start(self, call_id: str, tool: str) -> list[ToolActivity]:
        if call_id in self._seen:
            return []
        self._seen.add(call_id)
        self._open[call_id] = tool
        return [ToolActivity(ToolPhase.START, tool, call_id)]
