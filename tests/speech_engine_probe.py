"""A recording proxy on the Speech Engine link: whoever plays ElevenLabs ↔ the channel.

It forwards the handshake headers (the JWT included) and every frame both ways, and records each
frame with its direction, so a test can check what each side sent and received, on the wire.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from voice_channel.channel.auth import JWT_HEADER


@dataclass
class Wire:
    #: (direction, frame): direction is "up" (to the channel) or "down" (to ElevenLabs' side).
    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def up(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for d, f in self.frames if d == "up" and (kind is None or f.get("type") == kind)]

    def down(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for d, f in self.frames if d == "down" and (kind is None or f.get("type") == kind)]

    async def record(self, direction: str, frame: dict[str, Any]) -> None:
        async with self.changed:
            self.frames.append((direction, frame))
            self.changed.notify_all()

    async def wait(self, predicate: Any, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: predicate(self))


class SpeechEngineProbe:
    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        self.wire = Wire()
        self.server: TestServer | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/ws")).replace("http://", "ws://")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {JWT_HEADER: request.headers.get(JWT_HEADER, "")}
        async with aiohttp.ClientSession() as session:
            try:
                upstream = await session.ws_connect(self.target_url, headers=headers)
            except aiohttp.WSServerHandshakeError as exc:
                return web.Response(status=exc.status, text="upstream refused\n")
            downstream = web.WebSocketResponse()
            await downstream.prepare(request)

            async def pump(source: Any, sink: Any, direction: str) -> None:
                async for message in source:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    await self.wire.record(direction, json.loads(message.data))
                    if not sink.closed:
                        await sink.send_str(message.data)

            tasks = [
                asyncio.create_task(pump(downstream, upstream, "up")),
                asyncio.create_task(pump(upstream, downstream, "down")),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            await downstream.close()
            return downstream
