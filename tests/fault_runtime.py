"""A test-only runtime plugin, ``faulty``, for fault tests against a real server process.

Loaded with ``VOICE_CHANNEL_PLUGINS=fault_runtime`` (``tests/`` on ``PYTHONPATH``); never
installed. What it does depends on the words it receives:

* ``stall``      → says nothing, ever (until cancelled): a runtime that hangs;
* ``fail``       → says ``Partial`` and raises: a runtime failing mid-stream;
* ``slow``       → 200 words, 20 ms apart (about 4 s): a slow reply to interrupt or shut down;
* ``flood <KB>`` → that many KiB of text as fast as it can: a reply bigger than a peer's buffers;
* anything else  → ``You said: <text>`` at once.

Every cancellation is logged (``faulty_cancelled``), so tests can wait for it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import structlog

from voice_channel import hookimpl
from voice_channel.runtime import ConfirmationDecision, ConversationContext, RuntimeMessage, TextDelta
from voice_channel.settings import Settings

log = structlog.get_logger("fault_runtime")

_FLOOD_LINE = "The quick brown fox jumps over the lazy dog again and again. " * 4  # 240 characters


class FaultySession:
    async def respond(self, message: RuntimeMessage) -> AsyncIterator[TextDelta]:
        text = message.text
        try:
            if "stall" in text:
                await asyncio.Event().wait()
            elif "fail" in text:
                yield TextDelta("Partial ")
                raise RuntimeError("scripted runtime failure mid-stream")
            elif "slow" in text:
                for index in range(200):
                    yield TextDelta(f"word{index} ")
                    await asyncio.sleep(0.02)
            elif flood := re.search(r"flood (\d+)", text):
                for _ in range(int(flood.group(1)) * 1024 // len(_FLOOD_LINE)):
                    yield TextDelta(_FLOOD_LINE)
            else:
                yield TextDelta(f"You said: {text}")
        except (asyncio.CancelledError, GeneratorExit):
            log.info("faulty_cancelled", event_id=message.event_id)
            raise

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        """Never asks."""

    async def aclose(self) -> None:
        log.info("faulty_session_closed")


class FaultyRuntime:
    name = "faulty"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:
        """Nothing to start."""

    async def open_session(self, context: ConversationContext) -> FaultySession:
        return FaultySession()

    async def aclose(self) -> None:
        """Nothing to release."""


@hookimpl
def voice_channel_register_runtimes(register):  # type: ignore[no-untyped-def]
    register("faulty", FaultyRuntime, "Test-only: stalls, fails, floods or is slow on request.")
