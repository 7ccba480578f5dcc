"""``voice_channel.talk``: a terminal conversation against a server that does not behave like the channel."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voice_channel.elevenlabs.client import SpeechEngineClient
from voice_channel.talk import Talk

Handler = Callable[[web.Request], Awaitable[web.WebSocketResponse]]


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

    return await _serve(handler)


async def _serve(handler: Handler) -> TestServer:
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


async def test_a_reply_that_never_comes_is_reported_once_and_fails_the_run(capsys):
    # Was: "[no reply within ...]" twice (the end of input waited the timeout out again), the rest of the
    # script dropped, and exit status 0: a script could not tell.
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass  # never answers
        return ws

    server = await _serve(handler)
    try:
        async with SpeechEngineClient(str(server.make_url("/ws"))) as client:
            talker = Talk(client, out=io.StringIO(), reply_timeout=0.2)
            assert await talker.run(lines("hi", "second")) == 1
    finally:
        await server.close()
    assert capsys.readouterr().err.count("no reply within") == 1
