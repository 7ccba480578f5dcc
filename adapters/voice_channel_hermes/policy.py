"""The ``pre_tool_call`` hook: listed tools need the caller's spoken yes, on voice calls only.

Hermes calls ``pre_tool_call`` hooks before every tool call of every session. For a call made in
an ``elevenlabs_voice`` session to a tool in ``hermes.confirm_tools``, the hook answers
``{"action": "approve", ...}``: Hermes then holds the call at its own approval gate, which reaches
the adapter's ``send_exec_approval`` and so the caller, and fails closed on a timeout or a no. The
message is a short spoken description of the call, built from its arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from voice_channel_hermes import PLATFORM
from voice_channel_hermes.prompting import describe_tool_call
from voice_channel_hermes.settings import DEFAULT_CONFIRM_TOOLS

__all__ = ["ToolPolicy"]


def _session_platform() -> str:
    from gateway.session_context import get_session_env

    return get_session_env("HERMES_SESSION_PLATFORM", "") or ""


class ToolPolicy:
    """Which tools need a spoken confirmation; callable as Hermes's ``pre_tool_call`` hook."""

    def __init__(self, tools: Iterable[str] = DEFAULT_CONFIRM_TOOLS) -> None:
        self.tools = frozenset(tools)

    def configure(self, tools: Iterable[str]) -> None:
        """Take the tool list from the loaded settings (called when the adapter connects)."""
        self.tools = frozenset(tools)

    def __call__(self, tool_name: str = "", args: Mapping[str, Any] | None = None, **_: Any) -> dict[str, str] | None:
        if tool_name not in self.tools or _session_platform() != PLATFORM:
            return None
        return {
            "action": "approve",
            "message": describe_tool_call(tool_name, args),
            "rule_key": f"{PLATFORM}:{tool_name}",
        }
