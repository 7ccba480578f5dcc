"""The ``hermes`` runtime of the voice channel, bound to the gateway's adapter.

Inside Hermes's gateway, the adapter builds the channel's plugin manager with
:class:`AdapterRuntimePlugin`, which registers ``hermes`` as a runtime whose sessions are chats of
*this* adapter. (The ``hermes`` entry point of the ``voice_channel`` group is blocked there; it
only exists so that ``voice-channel plugins`` lists the runtime and its settings everywhere.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from voice_channel import ConversationContext, RuntimeSession, hookimpl
from voice_channel_hermes.settings import HermesSettings

if TYPE_CHECKING:
    from voice_channel import Settings

__all__ = ["RUNTIME_DESCRIPTION", "AdapterRuntimePlugin", "HermesRuntime"]

RUNTIME_DESCRIPTION = "Hermes Agent: the channel runs inside Hermes's gateway as platform elevenlabs_voice."


class HermesRuntime:
    """Conversations become chats of the adapter that serves the channel."""

    name = "hermes"

    def __init__(
        self,
        open_chat: Callable[[ConversationContext], RuntimeSession],
        readiness: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._open_chat = open_chat
        self._readiness = readiness

    async def start(self) -> None:
        """The gateway is already running: nothing to start."""

    def readiness(self) -> str | None:
        """Why Hermes cannot take a turn yet (the gateway still starting, the agent warming up), or None."""
        return self._readiness()

    async def open_session(self, context: ConversationContext) -> RuntimeSession:
        return self._open_chat(context)

    async def aclose(self) -> None:
        """The gateway owns Hermes: nothing to release."""


class AdapterRuntimePlugin:
    """A ``voice_channel`` plugin object registering the ``hermes`` runtime for one adapter."""

    def __init__(
        self,
        open_chat: Callable[[ConversationContext], RuntimeSession],
        readiness: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._open_chat = open_chat
        self._readiness = readiness

    @hookimpl
    def voice_channel_register_runtimes(self, register: Callable[..., None]) -> None:
        register("hermes", self._factory, RUNTIME_DESCRIPTION)

    @hookimpl
    def voice_channel_register_settings(self, register: Callable[..., None]) -> None:
        register("hermes", HermesSettings)

    def _factory(self, settings: Settings) -> HermesRuntime:
        del settings
        return HermesRuntime(self._open_chat, self._readiness)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
