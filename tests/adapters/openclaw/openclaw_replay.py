"""A stand-in OpenClaw Gateway that replays frames recorded from the real one (``frames/*.json``).

It follows the recorded conversation: it sends a fresh ``connect.challenge``, verifies the
client's Ed25519 signature over payload v3 exactly as the Gateway does, answers ``connect`` with
the recorded ``hello-ok`` (or a scripted error), and then replays a scenario: recorded frames the
Gateway sent are sent again (the recorded run id and session key replaced by the client's), and
where the recording has a request *from* the client the replay waits until the client sends a
request with that method, answering with the recorded response under the client's request id.
Tests can add frames (other runs' events, errors) and close the socket at chosen points.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voice_channel_openclaw.identity import payload_v3

FRAMES = Path(__file__).resolve().parent / "frames"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((FRAMES / f"{name}.json").read_text())


def recorded_hello() -> dict[str, Any]:
    for item in load("chat"):
        frame = item.get("frame") or {}
        if frame.get("type") == "res" and frame.get("id") == "connect":
            return copy.deepcopy(frame["payload"])
    raise LookupError("no hello-ok in frames/chat.json")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Scenario:
    """Recorded items after ``connect``, plus tweaks: ``edit(item_index, frame) -> frame | None``."""

    items: list[dict[str, Any]]
    #: Extra frames to send right after the chat.send response (e.g. another run's events).
    inject_after_ack: list[dict[str, Any]] = field(default_factory=list)
    #: Close the socket (code) instead of sending the item at this index.
    close_at: int | None = None
    edit: Callable[[int, dict[str, Any]], dict[str, Any] | None] | None = None

    @classmethod
    def recorded(cls, name: str, **kwargs: Any) -> Scenario:
        items = load(name)
        start = next(i for i, it in enumerate(items) if it.get("dir") == "out" and it["frame"]["method"] != "connect")
        return cls(items[start:], **kwargs)


class FakeGateway:
    """One WebSocket endpoint; serves connects and replays the queued scenarios in order."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.hello = recorded_hello()
        #: Errors to answer the next connects with, in order (then hello-ok).
        self.connect_errors: list[tuple[dict[str, Any], int]] = []
        self.scenarios: list[Scenario] = []
        self.requests: list[dict[str, Any]] = []
        self.connects: list[dict[str, Any]] = []
        self.verified: list[bool] = []
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.changed = asyncio.Condition()
        self.sockets: list[web.WebSocketResponse] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._ws)
        return app

    async def wait_for(self, predicate: Callable[[FakeGateway], Any], timeout: float = 10) -> Any:
        async with asyncio.timeout(timeout), self.changed:
            while not (result := predicate(self)):
                await self.changed.wait()
            return result

    async def _note(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # --- the socket ------------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        self.sockets.append(ws)
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._read(ws, inbox))
        try:
            if await self._handshake(ws, inbox):
                while self.scenarios and not ws.closed:
                    if not await self._replay(ws, inbox, self.scenarios.pop(0)):
                        break
                while not ws.closed and (frame := await inbox.get()) is not None:
                    await self._answer_default(ws, frame)
        finally:
            reader.cancel()
            await ws.close()
            await self._note()
        return ws

    async def _read(self, ws: web.WebSocketResponse, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame.get("method") != "connect":
                    self.requests.append(frame)
                    await self._note()
                await inbox.put(frame)
        await inbox.put(None)

    async def _send(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(frame))

    async def _handshake(self, ws: web.WebSocketResponse, inbox: asyncio.Queue[dict[str, Any] | None]) -> bool:
        nonce, ts = str(uuid.uuid4()), int(time.time() * 1000)
        await self._send(ws, {"type": "event", "event": "connect.challenge", "payload": {"nonce": nonce, "ts": ts}})
        frame = await inbox.get()
        if frame is None or frame.get("method") != "connect":
            return False
        params = frame["params"]
        self.connects.append(params)
        self.verified.append(self._verify(params, nonce, ts))
        await self._note()
        if self.connect_errors:
            error, close_code = self.connect_errors.pop(0)
            await self._send(ws, {"type": "res", "id": frame["id"], "ok": False, "error": error})
            await ws.close(code=close_code)
            return False
        if not self.verified[-1]:
            error = {
                "code": "INVALID_REQUEST",
                "message": "device signature invalid",
                "details": {"code": "DEVICE_AUTH_SIGNATURE_INVALID", "reason": "device-signature"},
            }
            await self._send(ws, {"type": "res", "id": frame["id"], "ok": False, "error": error})
            await ws.close(code=1008)
            return False
        await self._send(ws, {"type": "res", "id": frame["id"], "ok": True, "payload": self.hello})
        return True

    def _verify(self, params: dict[str, Any], nonce: str, ts: int) -> bool:
        device = params.get("device") or {}
        if device.get("nonce") != nonce or device.get("signedAt") != ts:
            return False
        payload = payload_v3(
            device_id=device["id"],
            client_id=params["client"]["id"],
            client_mode=params["client"]["mode"],
            role=params["role"],
            scopes=params["scopes"],
            signed_at_ms=ts,
            token=(params.get("auth") or {}).get("token", ""),
            nonce=nonce,
            platform=params["client"]["platform"],
        )
        public = _b64url_decode(device["publicKey"])
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(_b64url_decode(device["signature"]), payload.encode())
        except Exception:
            return False
        import hashlib

        return hashlib.sha256(public).hexdigest() == device["id"]

    # --- replay ----------------------------------------------------------------------------------

    async def _replay(
        self, ws: web.WebSocketResponse, inbox: asyncio.Queue[dict[str, Any] | None], scenario: Scenario
    ) -> bool:
        ids: dict[str, str] = {}
        subs: dict[str, str] = {}
        for index, item in enumerate(scenario.items):
            if scenario.close_at == index:
                await ws.close(code=1012)
                return False
            if item.get("dir") == "out":
                method = item["frame"]["method"]
                while True:
                    frame = await inbox.get()
                    if frame is None:
                        return False
                    if frame.get("method") == method:
                        break
                    await self._answer_default(ws, frame)
                ids[item["frame"]["id"]] = frame["id"]
                if method == "chat.send":
                    recorded = item["frame"]["params"]
                    subs[recorded["idempotencyKey"]] = frame["params"]["idempotencyKey"]
                    subs[recorded["sessionKey"]] = frame["params"]["sessionKey"]
                continue
            if "close" in item:
                await ws.close(code=int(item["close"]))
                return False
            text = json.dumps(item["frame"])
            for old, new in subs.items():
                text = text.replace(old, new)
            frame = json.loads(text)
            if frame.get("type") == "res":
                frame["id"] = ids.get(frame["id"], frame["id"])
            if scenario.edit is not None:
                frame = scenario.edit(index, frame)
                if frame is None:
                    continue
            await self._send(ws, frame)
            if frame.get("type") == "res" and (frame.get("payload") or {}).get("status") == "started":
                for extra in scenario.inject_after_ack:
                    await self._send(ws, extra)
        return True

    async def _answer_default(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        handler = self.handlers.get(frame.get("method", ""))
        payload = handler(frame) if handler else {"ok": True}
        await self._send(ws, {"type": "res", "id": frame.get("id"), "ok": True, "payload": payload})
