"""The ``echo`` runtime: streams back ``You said: <text>`` word by word.

For tests and benchmarks, and to show from outside exactly what crossed the trust boundary: it
echoes the sanitised text it received, nothing else. ``echo.delay_ms`` pauses between words
(``VOICE_CHANNEL_ECHO__DELAY_MS``), which makes interruptions easy to exercise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog

from voice_channel.markers import hookimpl
from voice_channel.runtime import ConfirmationDecision, ConversationContext, RuntimeMessage, TextDelta
from voice_channel.settings import Settings

log = structlog.get_logger("voice_channel.runtimes.echo")


class EchoSession:
    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def respond(self, message: RuntimeMessage) -> AsyncIterator[TextDelta]:
        words = f"You said: {message.text}".split(" ")
        try:
            for index, word in enumerate(words):
                if index and self._delay_s:
                    await asyncio.sleep(self._delay_s)
                yield TextDelta(word if index == len(words) - 1 else f"{word} ")
        except asyncio.CancelledError:
            log.debug("echo_cancelled", event_id=message.event_id)
            raise

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        """Echo never asks for confirmation."""

    async def aclose(self) -> None:
        """Nothing to release."""


class EchoRuntime:
    name = "echo"

    def __init__(self, settings: Settings) -> None:
        self._delay_s = settings.echo.delay_ms / 1000

    async def start(self) -> None:
        """Nothing to start."""

    async def open_session(self, context: ConversationContext) -> EchoSession:
        return EchoSession(self._delay_s)

    async def aclose(self) -> None:
        """Nothing to release."""


@hookimpl
def voice_channel_register_runtimes(register):  # type: ignore[no-untyped-def]
    register("echo", EchoRuntime, "Echoes what it received, word by word (tests, benchmarks).")
