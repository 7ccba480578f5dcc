"""A client that plays the ElevenLabs side of the Speech Engine protocol.

It signs the handshake JWT the way ElevenLabs does (HS256 over the SHA-256 digest of the API
key, issuer and subject as documented), opens the WebSocket, sends ``init``, then
``user_transcript`` frames with the running history and increasing ``event_id`` s, and reads
``agent_response`` chunks. ``voice-channel talk``, ``demo``, the tests and the benchmarks all use
it, so they exercise the server exactly as ElevenLabs would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import ssl as ssl_module
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import aiohttp
import jwt

from voice_channel.channel.auth import JWT_HEADER

__all__ = ["ISSUER", "SUBJECT", "Reply", "SpeechEngineClient", "sign_speech_engine_jwt"]

ISSUER = "https://api.elevenlabs.io/convai/speech-engine"
SUBJECT = "convai_speech_engine_upstream"
_RESIDENCY_SUFFIX = re.compile(r"_residency_[a-z0-9]+$")


def sign_speech_engine_jwt(
    api_key: str,
    *,
    now: float | None = None,
    lifetime_s: int = 600,
    issuer: str = ISSUER,
    subject: str = SUBJECT,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign a Speech Engine handshake JWT as ElevenLabs does (HS256, key = sha256(api_key))."""
    issued = int(time.time() if now is None else now)
    secret = hashlib.sha256(_RESIDENCY_SUFFIX.sub("", api_key.strip()).encode("utf-8")).digest()
    claims = {"iss": issuer, "sub": subject, "iat": issued, "exp": issued + lifetime_s, **(extra_claims or {})}
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class Reply:
    """The frames received for one ``event_id``."""

    event_id: int | None
    chunks: list[str] = field(default_factory=list)
    final: bool = False
    #: Frames of other (older) event ids seen while waiting for this reply.
    foreign: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class SpeechEngineClient:
    """One conversation, from ElevenLabs' side. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        conversation_id: str | None = None,
        send_init: bool = True,
        heartbeat: float | None = 20.0,
        max_msg_size: int = 16 * 1024 * 1024,
        ssl: ssl_module.SSLContext | None = None,
        hear_replies: bool = False,
    ) -> None:
        """``hear_replies``: :meth:`reply` adds each reply that reached its final to the history as an
        ``agent`` item, as ElevenLabs does for a reply played to its end (:meth:`heard` then replaces it
        with what was heard of it). Otherwise the caller of :meth:`heard` keeps the history."""
        self.url = url
        self._hear_replies = hear_replies
        self._ssl = ssl
        self.conversation_id = conversation_id or f"conv_{secrets.token_hex(8)}"
        self.history: list[dict[str, str]] = []
        self.event_id = 0
        self._api_key = api_key
        self._headers = dict(headers or {})
        self._send_init = send_init
        self._heartbeat = heartbeat
        self._max_msg_size = max_msg_size
        self._session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> SpeechEngineClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        headers = dict(self._headers)
        if self._api_key:
            headers[JWT_HEADER] = sign_speech_engine_jwt(self._api_key)
        self._session = aiohttp.ClientSession()
        try:
            self.ws = await self._session.ws_connect(
                self.url,
                headers=headers,
                heartbeat=self._heartbeat,
                max_msg_size=self._max_msg_size,
                ssl=self._ssl if self._ssl is not None else True,
            )
        except BaseException:
            await self._session.close()
            raise
        if self._send_init:
            await self.send({"type": "init", "conversation_id": self.conversation_id})

    async def disconnect(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._session is not None:
            await self._session.close()

    # --- sending ---

    async def send(self, frame: dict[str, Any] | str) -> None:
        assert self.ws is not None, "not connected"
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def say(self, text: str, *, event_id: int | None = None) -> int:
        """Add a user turn to the history and send the transcript; return its ``event_id``."""
        self.history.append({"role": "user", "content": text})
        self.event_id = self.event_id + 1 if event_id is None else event_id
        await self.send_transcript(self.event_id)
        return self.event_id

    async def send_transcript(self, event_id: int | None, history: list[dict[str, Any]] | None = None) -> None:
        frame: dict[str, Any] = {
            "type": "user_transcript",
            "user_transcript": history if history is not None else self.history,
        }
        if event_id is not None:
            frame["event_id"] = event_id
        await self.send(frame)

    def heard(self, text: str) -> None:
        """Record what the caller heard of the agent's last reply, as ElevenLabs does in the history."""
        if self._hear_replies and self.history and self.history[-1]["role"] == "agent":
            del self.history[-1]  # the reply as added by reply(): what was heard of it replaces it
        if text.strip():
            self.history.append({"role": "agent", "content": text})

    async def ping(self) -> None:
        await self.send({"type": "ping"})

    async def close_conversation(self) -> None:
        await self.send({"type": "close"})

    # --- receiving ---

    async def receive(self, timeout: float | None = 10.0) -> dict[str, Any] | Literal["closed"]:
        """The next JSON frame, or ``"closed"`` once the server closed the socket."""
        assert self.ws is not None, "not connected"
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return json.loads(msg.data)
        return "closed"

    async def frames(self, timeout: float | None = 10.0) -> AsyncIterator[dict[str, Any]]:
        while True:
            frame = await self.receive(timeout)
            if frame == "closed":
                return
            yield frame

    async def reply(self, event_id: int | None = None, timeout: float = 10.0) -> Reply:
        """Collect the ``agent_response`` chunks of ``event_id`` (default: the last sent) until final."""
        target = self.event_id if event_id is None else event_id
        reply = Reply(target)
        deadline = asyncio.get_running_loop().time() + timeout
        while not reply.final:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no final for event_id {target} within {timeout}s; got {reply.text!r}")
            frame = await self.receive(remaining)
            if frame == "closed":
                raise ConnectionError(f"socket closed before the final of event_id {target}")
            if frame.get("type") != "agent_response":
                continue
            if frame.get("event_id") != target:
                reply.foreign.append(frame)
                continue
            if frame.get("content"):
                reply.chunks.append(frame["content"])
            reply.final = bool(frame.get("is_final"))
        if self._hear_replies and reply.text.strip() and target == self.event_id:
            self.history.append({"role": "agent", "content": reply.text})
        return reply
