"""Toward our channel: one Speech Engine conversation, played exactly as ElevenLabs plays it.

:class:`~voice_channel.elevenlabs.client.SpeechEngineClient` signs the handshake JWT like ElevenLabs (HS256
over the SHA-256 of the API key, exact issuer and subject), opens the WebSocket and sends
``init``; this module adds the reading side the engine needs: every frame from the channel is
handed to a callback (``agent_response`` chunks are routed by ``event_id`` there), ``pong`` s are
timed, and ``ping`` s go out periodically as ElevenLabs sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from voice_channel.elevenlabs.client import SpeechEngineClient

__all__ = ["Upstream", "UpstreamError"]


class UpstreamError(Exception):
    """The channel could not be reached or refused the conversation; the message says why."""


class Upstream:
    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        conversation_id: str,
        on_frame: Callable[[dict[str, Any]], None],
        ping_interval_s: float = 10.0,
    ) -> None:
        self.url = url
        self.client = SpeechEngineClient(url, api_key=api_key, conversation_id=conversation_id)
        self._on_frame = on_frame
        self._ping_interval_s = ping_interval_s
        self._ping_sent: float | None = None
        self.rtt_ms: float | None = None
        self.sent: list[dict[str, Any]] = []

    async def connect(self) -> None:
        try:
            await self.client.connect()
        except aiohttp.WSServerHandshakeError as exc:
            hint = " (is the API key the channel's?)" if exc.status == 401 else ""
            raise UpstreamError(f"the channel refused the conversation: HTTP {exc.status}{hint}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"cannot reach the channel at {self.url}: {exc}") from None

    async def send_transcript(self, event_id: int, history: list[dict[str, str]]) -> None:
        frame = {"type": "user_transcript", "event_id": event_id, "user_transcript": history}
        self.sent.append(frame)
        await self.client.send(frame)

    async def run(self) -> None:
        """Read the channel's frames until it closes the socket; ping it meanwhile."""
        pinger = asyncio.create_task(self._ping_loop()) if self._ping_interval_s else None
        try:
            async for frame in self.client.frames(timeout=None):
                if frame.get("type") == "pong" and self._ping_sent is not None:
                    self.rtt_ms = (time.monotonic() - self._ping_sent) * 1000
                    self._ping_sent = None
                self._on_frame(frame)
        finally:
            if pinger is not None:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval_s)
            self._ping_sent = time.monotonic()
            await self.client.ping()

    async def say_goodbye(self) -> None:
        """Send ``close`` (the clean end of a conversation) if the socket is still open."""
        ws = self.client.ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await self.client.close_conversation()

    async def disconnect(self) -> None:
        await self.client.disconnect()
