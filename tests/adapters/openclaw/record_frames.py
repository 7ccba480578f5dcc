"""Record real Gateway frames for the unit tests (run by hand after an OpenClaw upgrade).

    .venv/bin/python tests/adapters/openclaw/record_frames.py

Starts an isolated Gateway with the fake model, plays a few scenarios over a raw WebSocket and
writes every frame, in order, to ``frames/<scenario>.json``. Secrets (token, signatures, nonce)
are replaced; the huge ``hello-ok`` snapshot is trimmed. The unit tests replay these frames from
a stand-in Gateway (``openclaw_replay.py``) to test the client without Node.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from openclaw_sandbox import start_gateway  # noqa: E402

from processes import stop_process  # noqa: E402
from voice_channel_openclaw.identity import DeviceIdentity  # noqa: E402
from voice_channel_openclaw.protocol import CAPS, CLIENT_ID, CLIENT_MODE, SCOPES  # noqa: E402

FRAMES = HERE / "frames"


class Recorder:
    def __init__(self, url: str, token: str, identity: DeviceIdentity) -> None:
        self.url, self.token, self.identity = url, token, identity
        self.frames: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.http = aiohttp.ClientSession()

    async def connect(self, token: str | None = None) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.url, max_msg_size=64 * 1024 * 1024)
        challenge = await self.recv()
        nonce, ts = challenge["payload"]["nonce"], challenge["payload"]["ts"]
        device = self.identity.connect_device(
            client_id=CLIENT_ID,
            client_mode=CLIENT_MODE,
            role="operator",
            scopes=SCOPES,
            token=token or self.token,
            nonce=nonce,
            signed_at_ms=ts,
            platform="linux",
        )
        await self.send(
            "connect",
            {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": {
                    "id": CLIENT_ID,
                    "displayName": "recorder",
                    "version": "0",
                    "platform": "linux",
                    "mode": CLIENT_MODE,
                    "instanceId": "rec",
                },
                "role": "operator",
                "scopes": list(SCOPES),
                "caps": list(CAPS),
                "auth": {"token": token or self.token},
                "device": device,
            },
            request_id="connect",
        )
        return await self.until(lambda f: f.get("type") == "res" and f.get("id") == "connect")

    async def send(self, method: str, params: dict[str, Any], request_id: str | None = None) -> str:
        request_id = request_id or uuid.uuid4().hex[:8]
        frame = {"type": "req", "id": request_id, "method": method, "params": params}
        self.frames.append({"dir": "out", "frame": frame})
        assert self.ws is not None
        await self.ws.send_str(json.dumps(frame))
        return request_id

    async def recv(self) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            message = await self.ws.receive(timeout=60)
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame.get("event") in ("tick", "health", "presence"):
                    continue
                self.frames.append({"dir": "in", "t": time.monotonic(), "frame": frame})
                return frame
            self.frames.append({"dir": "in", "close": message.data})
            raise ConnectionError(f"closed {message.data}")

    async def until(self, predicate: Any) -> dict[str, Any]:
        while not predicate(frame := await self.recv()):
            pass
        return frame

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()


def scrub(frames: list[dict[str, Any]], token: str) -> list[dict[str, Any]]:
    text = json.dumps(frames).replace(token, "<token>")
    frames = json.loads(text)
    t0 = next((f["t"] for f in frames if "t" in f), 0.0)
    for item in frames:
        if "t" in item:
            item["ms"] = round((item.pop("t") - t0) * 1000, 1)
        frame = item.get("frame") or {}
        payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
        if payload.get("type") == "hello-ok":
            payload["snapshot"] = {"trimmed": True}
            features = payload.get("features") or {}
            features["methods"] = [m for m in features.get("methods", []) if "approval" in m or m.startswith("chat.")]
            features["events"] = ["trimmed"]
        if frame.get("method") == "connect":
            frame["params"]["device"].update({"signature": "<sig>"})
    return frames


def chat_params(session: str, message: str, run_id: str) -> dict[str, Any]:
    return {"sessionKey": session, "message": message, "idempotencyKey": run_id, "deliver": False}


async def record(gateway_url: str, token: str) -> None:
    FRAMES.mkdir(exist_ok=True)
    identity = DeviceIdentity.generate()

    async def scenario(name: str, play: Any) -> None:
        rec = Recorder(gateway_url, token, identity)
        try:
            await play(rec)
        finally:
            await rec.close()
        (FRAMES / f"{name}.json").write_text(json.dumps(scrub(rec.frames, token), indent=1) + "\n")
        print(f"recorded {name}: {len(rec.frames)} frames")

    session = f"agent:main:elevenlabs:rec-{uuid.uuid4().hex[:6]}"

    async def chat(rec: Recorder) -> None:
        await rec.connect()
        run_id = str(uuid.uuid4())
        await rec.send("chat.send", chat_params(session, "hello gateway", run_id))
        await rec.until(
            lambda f: (
                f.get("event") == "chat"
                and f["payload"].get("runId") == run_id
                and f["payload"].get("state") in ("final", "aborted", "error")
            )
        )

    async def abort(rec: Recorder) -> None:
        await rec.connect()
        run_id = str(uuid.uuid4())
        await rec.send("chat.send", chat_params(session, "tell me something slow", run_id))
        await rec.until(lambda f: f.get("event") == "agent" and f["payload"].get("stream") == "assistant")
        await rec.send("chat.abort", {"sessionKey": session, "runId": run_id})
        await rec.until(lambda f: f.get("event") == "agent" and f["payload"].get("data", {}).get("phase") == "error")

    async def approval(rec: Recorder) -> None:
        await rec.connect()
        run_id = str(uuid.uuid4())
        await rec.send("chat.send", chat_params(session, "please run: echo recorded-approval", run_id))
        requested = await rec.until(lambda f: f.get("event") == "exec.approval.requested")
        await rec.send("exec.approval.resolve", {"id": requested["payload"]["id"], "decision": "allow-once"})
        await rec.until(lambda f: f.get("event") == "chat" and f["payload"].get("state") == "final")

    async def wrong_token(rec: Recorder) -> None:
        try:
            await rec.connect(token="wrong-token-recorded")
            await rec.recv()  # the close
        except ConnectionError:
            pass

    await scenario("chat", chat)
    await scenario("abort", abort)
    await scenario("approval", approval)
    await scenario("wrong_token", wrong_token)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="openclaw-record-"))
    running = start_gateway(root)
    try:
        asyncio.run(record(running.sandbox.url, running.sandbox.token))
    finally:
        running.sandbox.stop()
        stop_process(running.fake_process)


if __name__ == "__main__":
    main()
