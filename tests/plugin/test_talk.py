"""``voice_channel.talk``: a terminal conversation against a server that does not behave like the channel."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.talk import Talk


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def _server_sending(*junk: str | bytes) -> TestServer:
    """A WebSocket server that answers each user turn with ``junk`` frames, then a proper final reply."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            frame = json.loads(message.data)
            if frame.get("type") != "user_transcript":
                continue
            for item in junk:
                await (ws.send_bytes(item) if isinstance(item, bytes) else ws.send_str(item))
            reply = {"type": "agent_response", "event_id": frame["event_id"], "content": "Hello.", "is_final": True}
            await ws.send_str(json.dumps(reply))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize(
    "junk",
    [
        "not json {",
        b"\xff\xfe",
        "[1, 2]",
        '{"type": "agent_response", "event_id": 1, "content": 5}',
    ],
)
async def test_a_malformed_frame_from_the_server_is_skipped_and_the_reply_still_shown(junk, capsys):
    # Was: the receiver died on it (JSONDecodeError, AttributeError, TypeError) without a word, and talk waited
    # out the reply timeout twice, showed no reply and exited 0.
    server = await _server_sending(junk)
    out = io.StringIO()
    try:
        async with SpeechEngineClient(str(server.make_url("/ws"))) as client:
            talker = Talk(client, out=out, reply_timeout=5)
            assert await talker.run(lines("hi")) == 0
    finally:
        await server.close()
    assert "agent> Hello." in out.getvalue()
    assert "no reply within" not in capsys.readouterr().err
